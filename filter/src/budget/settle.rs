//! What a finished model call is charged: the engine's own counts where it
//! reported them, else the gateway's estimates (the request's input, the
//! reply's text), and how the call ended.

use super::estimate::{Ask, text_tokens};
use super::meter::Metered;
use attach_contract::usage::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// A figure the engine did not report is the gateway's estimate.
    pub estimated: bool,
}

impl Charge {
    pub fn tokens(&self) -> u64 {
        self.tokens_in.saturating_add(self.tokens_out)
    }
}

/// How the reply went: whether it ended, whether the gateway stopped it,
/// and the upstream's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ending {
    pub status: Option<u16>,
    pub ended: bool,
    pub stopped: bool,
}

/// The charge of a call asked as `ask` whose reply was `metered` and
/// ended as `ending`. An engine that answered an error and reported no
/// usage did no work: nothing is charged.
pub fn charge(ask: &Ask, metered: &Metered, ending: Ending) -> Charge {
    let reported = metered.tokens_in.is_some() || metered.tokens_out.is_some();
    if outcome(ending) == Outcome::Failed && !reported {
        return Charge {
            tokens_in: 0,
            tokens_out: 0,
            estimated: false,
        };
    }
    let tokens_out = metered
        .tokens_out
        .unwrap_or_else(|| text_tokens(metered.text_bytes));
    Charge {
        tokens_in: metered.tokens_in.unwrap_or(ask.tokens_in),
        tokens_out,
        estimated: metered.tokens_in.is_none() || metered.tokens_out.is_none(),
    }
}

/// The record's outcome: the gateway's stop first, then a client that
/// went away, then an error status.
pub fn outcome(ending: Ending) -> Outcome {
    match ending {
        Ending { stopped: true, .. } => Outcome::Stopped,
        Ending { ended: false, .. } => Outcome::Abandoned,
        Ending {
            status: Some(s), ..
        } if s >= 400 => Outcome::Failed,
        _ => Outcome::Complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::routes::WireFormat;

    fn ask() -> Ask {
        Ask {
            model: Some("m".into()),
            tokens_in: 30,
            tokens_out: 500,
            stream: true,
            format: WireFormat::OpenAi,
        }
    }

    fn reply(tokens_in: Option<u64>, tokens_out: Option<u64>, text_bytes: u64) -> Metered {
        Metered {
            tokens_in,
            tokens_out,
            text_bytes,
            model: None,
        }
    }

    const ENDED: Ending = Ending {
        status: Some(200),
        ended: true,
        stopped: false,
    };

    #[test]
    fn the_engine_counts_win_else_the_estimates() {
        let exact = charge(&ask(), &reply(Some(12), Some(40), 999), ENDED);
        assert_eq!(
            (exact.tokens_in, exact.tokens_out, exact.estimated),
            (12, 40, false)
        );
        assert_eq!(exact.tokens(), 52);
        // Nothing reported: the request's input estimate, the text's output.
        let guessed = charge(&ask(), &reply(None, None, 41), ENDED);
        assert_eq!(
            (guessed.tokens_in, guessed.tokens_out, guessed.estimated),
            (30, 11, true)
        );
        let half = charge(&ask(), &reply(None, Some(7), 1000), ENDED);
        assert_eq!(
            (half.tokens_in, half.tokens_out, half.estimated),
            (30, 7, true)
        );
    }

    #[test]
    fn a_failed_call_without_usage_costs_nothing() {
        let failed = Ending {
            status: Some(503),
            ..ENDED
        };
        assert_eq!(charge(&ask(), &reply(None, None, 80), failed).tokens(), 0);
        // An engine that failed yet reported what it used is charged that.
        assert_eq!(
            charge(&ask(), &reply(Some(3), Some(2), 80), failed).tokens(),
            5
        );
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome(ENDED), Outcome::Complete);
        let gone = Ending {
            ended: false,
            ..ENDED
        };
        assert_eq!(outcome(gone), Outcome::Abandoned);
        // An abandoned stream is charged for what passed.
        assert_eq!(charge(&ask(), &reply(None, None, 8), gone).tokens(), 32);
        let stopped = Ending {
            stopped: true,
            ..gone
        };
        assert_eq!(outcome(stopped), Outcome::Stopped);
        let failed = Ending {
            status: Some(500),
            ..ENDED
        };
        assert_eq!(outcome(failed), Outcome::Failed);
    }
}
