"""Downstream agents for the A2A tests, all on 127.0.0.1.

- SdkAgent: the official A2A Python SDK's server (Starlette routes from
  a2a.server.routes, served by uvicorn in a thread) with an AgentExecutor
  that answers the input text in upper case: as a completed task of its own
  (the upper-cased text as the artifact and the status message), or with
  reply="message" as a direct message and no task. Input "sleep <seconds>"
  makes it wait first, for tasks that are still running when the test
  looks. Input "chunks <n> <seconds>" streams n chunks "c0".."c<n-1>" of
  one artifact, that many seconds apart, before completing. JSON-RPC is
  served at "/" for protocol 1.0 and 0.3 alike. The card declares
  streaming unless streaming=False (the SDK server streams either way; the
  card is what tells the gateway whether to ask for a stream). With
  sign_card (an SDK signer, a2a.utils.signing) the card it serves carries
  the agent's own signature.
- JsonAgent: a plain HTTP server for `kind=http` agents: every POST gets
  {"echo": <body as JSON>, "user": <X-Attach-User>} back; requests are
  recorded (header names in lower case).

Helpers build SDK clients that reach an agent through the gateway.
"""

import asyncio
import json
import threading
import time
from http.server import ThreadingHTTPServer

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import new_task, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import a2a_pb2 as pb
from starlette.applications import Starlette

from asgi_server import AsgiServer
from netutil import HOST, QuietHandler, free_port


class UpperExecutor(AgentExecutor):
    """Answers one message with its text in upper case, as a task or a message."""

    def __init__(self, reply="task"):
        self.reply = reply
        self.seen = []  # (text, context_id) of every request

    async def execute(self, context, event_queue):
        text = context.get_user_input()
        self.seen.append((text, context.context_id))
        if text.startswith("sleep "):
            await asyncio.sleep(float(text.split()[1]))
        if text.startswith("chunks "):
            await self.chunks(context, event_queue, text)
            return
        if self.reply == "message":
            await event_queue.enqueue_event(new_text_message(text.upper()))
            return
        if context.current_task is None:
            await event_queue.enqueue_event(
                new_task(
                    context.task_id,
                    context.context_id,
                    pb.TaskState.TASK_STATE_WORKING,
                    history=[context.message],
                )
            )
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.add_artifact([new_text_part(text.upper())], name="upper")
        await updater.complete(updater.new_agent_message([new_text_part(text.upper())]))

    async def chunks(self, context, event_queue, text):
        _, count, pause = text.split()
        if context.current_task is None:
            await event_queue.enqueue_event(
                new_task(
                    context.task_id,
                    context.context_id,
                    pb.TaskState.TASK_STATE_WORKING,
                    history=[context.message],
                )
            )
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        for i in range(int(count)):
            if i:
                await asyncio.sleep(float(pause))
            await updater.add_artifact(
                [new_text_part(f"c{i}")],
                artifact_id="chunks",
                name="chunks",
                append=i > 0,
                last_chunk=i == int(count) - 1,
            )
        await updater.complete(updater.new_agent_message([new_text_part("done")]))

    async def cancel(self, context, event_queue):
        raise NotImplementedError("this agent cannot cancel")


def agent_card(name, url, streaming=True):
    return pb.AgentCard(
        name=name,
        description="Answers in upper case",
        version="1.2.3",
        supported_interfaces=[
            pb.AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            pb.AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=pb.AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            pb.AgentSkill(
                id="upper", name="Upper case", description="Upper-cases text", tags=["text"]
            )
        ],
    )


class SdkAgent:
    def __init__(self, name="upper", reply="task", streaming=True, sign_card=None):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.name = name
        self.executor = UpperExecutor(reply)
        card = agent_card(name, self.url + "/", streaming)
        if sign_card is not None:
            card = sign_card(card)
        handler = DefaultRequestHandler(
            agent_executor=self.executor, task_store=InMemoryTaskStore(), agent_card=card
        )
        routes = create_agent_card_routes(card) + create_jsonrpc_routes(
            handler, "/", enable_v0_3_compat=True
        )
        self.app = Starlette(routes=routes)
        self._server = AsgiServer(self.app, self.port, "SDK agent", lifespan="off")

    def start(self):
        self._server.start()
        return self

    def stop(self):
        self._server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _JsonHandler(QuietHandler):
    def do_POST(self):
        raw = self.read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("latin-1")
        user = self.headers.get("X-Attach-User")
        self.server.agent.requests.append(
            {
                "path": self.path,
                "body": body,
                "user": user,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        reply = json.dumps({"echo": body, "user": user}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class JsonAgent:
    def __init__(self):
        self.requests = []
        self._server = ThreadingHTTPServer((HOST, 0), _JsonHandler)
        self._server.daemon_threads = True
        self._server.agent = self
        self.port = self._server.server_address[1]
        self.url = f"http://{HOST}:{self.port}"
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- clients through the gateway ------------------------------------------------


def agent_base(gateway, name):
    return f"{gateway.base_url}/a2a/agents/{name}"


async def resolve_card(gateway, name, headers=None):
    """The agent's card through the gateway, with the SDK's resolver."""
    async with httpx.AsyncClient(headers=headers or {}, timeout=20) as http:
        return await A2ACardResolver(http, agent_base(gateway, name)).get_agent_card()


def only_version(card, version):
    """A copy of card that offers only the JSON-RPC interface of version."""
    out = pb.AgentCard()
    out.CopyFrom(card)
    keep = [i for i in card.supported_interfaces if i.protocol_version == version]
    assert keep, f"the card offers no {version} interface: {card.supported_interfaces}"
    del out.supported_interfaces[:]
    out.supported_interfaces.extend(keep)
    return out


def sdk_client(card, token, version, streaming=False):
    """An SDK client for card speaking version ("1.0" or "0.3") over
    JSON-RPC, sending the token; streaming sends stream."""
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    config = ClientConfig(streaming=streaming, httpx_client=http)
    return ClientFactory(config).create(only_version(card, version)), http


def text_message(text, context_id=None):
    return pb.Message(
        message_id=f"m-{time.monotonic_ns()}",
        role=pb.Role.ROLE_USER,
        parts=[pb.Part(text=text)],
        context_id=context_id or "",
    )


async def send(client, text, return_immediately=False):
    """The one answer (a Task, or a Message) to a non-streaming send."""
    request = pb.SendMessageRequest(
        message=text_message(text),
        configuration=pb.SendMessageConfiguration(return_immediately=return_immediately),
    )
    answers = [a async for a in client.send_message(request)]
    assert len(answers) == 1, answers
    answer = answers[0]
    return answer.task if answer.HasField("task") else answer.message


def texts(parts):
    return [p.text for p in parts if p.text]


def task_texts(task):
    """Every text of the task's status message, artifacts and agent history."""
    found = texts(task.status.message.parts)
    for artifact in task.artifacts:
        found += texts(artifact.parts)
    for message in task.history:
        if message.role == pb.Role.ROLE_AGENT:
            found += texts(message.parts)
    return found
