"""Real SGLang 0.5.23 objects for the plugin tests (imported only where SGLang is installed).

Everything here is SGLang's own class, built the way SGLang builds it; the only stand-ins are the
DP controller's ZMQ sockets and load-snapshot reader (:class:`RecordingSocket`,
:class:`SnapshotReader`), since no scheduler processes run.
"""

from __future__ import annotations

import pickle
import time
from array import array
from pathlib import Path

import msgspec

from sglang.srt.managers.data_parallel_controller import DataParallelController, DPBudget
from sglang.srt.managers.io_struct import TokenizedGenerateReqInput, msgpack_decode
from sglang.srt.managers.load_snapshot import LoadSnapshot
from sglang.srt.managers.schedule_batch import Req
from sglang.srt.runtime_context import publish
from sglang.srt.sampling.sampling_params import SamplingParams
from sglang.srt.server_args import prepare_server_args

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = REPO / "models" / "tiny-qwen3-moe"


def publish_server_args(*extra: str) -> object:
    """Parse ``--model-path <tiny model> --device cpu *extra`` and publish it as a scheduler would."""
    server_args = prepare_server_args(["--model-path", str(TINY_MODEL), "--device", "cpu", *extra])
    publish(server_args, role="scheduler")
    return server_args


def waiting_req(rid: str, prompt_tokens: int, max_new_tokens: int = 16,
                priority: int | None = None, first_token: int = 0) -> Req:
    """A ``Req`` as the scheduler queues it: prompt ids, sampling params, wait-queue entry time."""
    req = Req(rid, "", array("q", range(first_token, first_token + prompt_tokens)),
              SamplingParams(max_new_tokens=max_new_tokens), priority=priority)
    req.time_stats.set_wait_queue_entry_time()
    return req


def tokenized_req(rid: str, prompt_tokens: int, routed_dp_rank: int | None = None,
                  routing_key: str | None = None, first_token: int = 0) -> TokenizedGenerateReqInput:
    """What the tokenizer sends the DP controller for one generate request."""
    return TokenizedGenerateReqInput(
        rid=rid, input_text="x" * prompt_tokens,
        input_ids=array("q", range(first_token, first_token + prompt_tokens)),
        input_embeds=None, mm_inputs=None, token_type_ids=None,
        sampling_params=SamplingParams(max_new_tokens=8), return_logprob=False,
        logprob_start_len=-1, top_logprobs_num=0, token_ids_logprob=None, stream=False,
        routed_dp_rank=routed_dp_rank, routing_key=routing_key)


class RecordingSocket:
    """Stands in for a DP worker's ZMQ PUSH socket: keeps what ``sock_send`` writes (msgpack bytes,
    or the object itself when SGLang uses pickle IPC, ``SGLANG_USE_PICKLE_IPC``)."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, data: bytes, flags: int = 0) -> None:
        self.sent.append(msgpack_decode(bytes(data)))  # decoded with SGLang's own decoder

    def send_pyobj(self, obj: object, flags: int = 0, protocol: int = -1) -> None:
        self.sent.append(pickle.loads(pickle.dumps(obj, protocol=protocol)))

    def rids(self) -> list[str]:
        """Request ids of everything sent."""
        return [obj.rid for obj in self.sent]


class SnapshotReader:
    """Stands in for the shared-memory reader: returns the given ``LoadSnapshot`` objects, with a
    new ``timestamp`` on every read when ``live`` (a scheduler publishing between dispatches)."""

    def __init__(self, snapshots: list[LoadSnapshot], live: bool = False) -> None:
        self.snapshots = snapshots
        self.live = live

    def read_all(self) -> list[LoadSnapshot]:
        if self.live:
            now = time.time()
            self.snapshots = [msgspec.structs.replace(s, timestamp=now) for s in self.snapshots]
        return list(self.snapshots)


def snapshot(rank: int, waiting: int = 0, uncached_tokens: int = 0, running: int = 0) -> LoadSnapshot:
    """A fresh load snapshot of one DP rank (KV capacity 4096 tokens)."""
    return LoadSnapshot(timestamp=time.time(), dp_rank=rank, num_running_reqs=running,
                        num_waiting_reqs=waiting, num_waiting_uncached_tokens=uncached_tokens,
                        max_total_num_tokens=4096)


def dp_controller(snapshots: list[LoadSnapshot], active: list[int] | None = None,
                  live: bool = False) -> DataParallelController:
    """A ``DataParallelController`` with the attributes its dispatch methods read, no processes."""
    controller = object.__new__(DataParallelController)
    size = len(snapshots)
    controller.workers = [RecordingSocket() for _ in range(size)]
    controller.status = [True] * size
    controller._active_workers = list(range(size)) if active is None else active
    controller.load_snapshot_reader = SnapshotReader(snapshots, live)
    controller.dp_budget = DPBudget(size)
    controller.dp_budget.update_budget(snapshots)
    return controller
