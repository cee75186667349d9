//! What every handler shares.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::a2a::card::CardCache;
use crate::a2a::card_signing::CardSigner;
use crate::a2a::forward::Forwarder;
use crate::a2a::model::Task;
use crate::auth::{GatewayIssuer, Trust};
use crate::config::{Config, MemoryBackend, Metering};
use crate::metrics::Metrics;
use crate::push::{PushSettings, Pusher};
use crate::store::Store;
use crate::task_events::TaskEvents;
use crate::weaviate::Weaviate;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub forwarder: Forwarder,
    pub metrics: Metrics,
    pub cards: CardCache,
    /// Signs every card served with the gateway's keys
    /// (`config.signing_keys`), when the service has them.
    pub card_signer: CardSigner,
    /// The gateway's keys and name, when the service has the keys: callers
    /// are then who the gateway's identity token says, and agents
    /// registered with a DID get tokens signed with them.
    pub issuer: Option<GatewayIssuer>,
    /// Client for fetching downstream cards (no identity headers).
    pub card_client: reqwest::Client,
    /// Where mirrored model exchanges are read from besides the store
    /// (`MEM_BACKEND=weaviate`).
    pub weaviate: Option<Weaviate>,
    /// Tasks this process is forwarding right now, failed at shutdown if
    /// they do not finish in time.
    pub in_flight: Mutex<HashSet<String>>,
    /// Push notifications, off unless `A2A_PUSH=on`.
    pub push: Pusher,
    /// The streams following tasks.
    pub events: TaskEvents,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// A state with push notifications off.
    pub fn new(config: Config, store: Store) -> Result<Self, String> {
        Self::with_push(config, store, PushSettings::default())
    }

    pub fn with_push(config: Config, store: Store, push: PushSettings) -> Result<Self, String> {
        let metrics = Metrics::new(config.usage.metering != Metering::Off);
        let push = Pusher::new(push, store.clone(), metrics.clone())?;
        let forwarder = Forwarder::new(config.assertion_key.clone(), metrics.clone())?;
        let card_client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let weaviate = match &config.memory_backend {
            MemoryBackend::Weaviate(w) => Some(Weaviate::new(w)?),
            MemoryBackend::Service | MemoryBackend::None => None,
        };
        let card_signer = CardSigner::new(config.signing_keys.clone(), &config.public_url);
        let issuer = config
            .signing_keys
            .clone()
            .map(|keys| GatewayIssuer::new(keys, &config.public_url));
        Ok(AppState(Arc::new(Inner {
            config,
            store,
            forwarder,
            metrics,
            cards: CardCache::default(),
            card_signer,
            issuer,
            card_client,
            weaviate,
            in_flight: Mutex::new(HashSet::new()),
            push,
            events: TaskEvents::default(),
        })))
    }

    /// Tells whoever waits on `task` that it changed: its webhooks and the
    /// streams that follow it. Every recorded state change goes through here.
    pub fn task_changed(&self, task: &Task) {
        self.push.notify(task);
        self.events.status(task);
    }

    /// What callers' identities are checked against.
    pub fn trust(&self) -> Trust<'_> {
        Trust {
            assertion_key: &self.config.assertion_key,
            issuer: self.issuer.as_ref(),
        }
    }

    pub fn in_flight_ids(&self) -> Vec<String> {
        self.in_flight
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}
