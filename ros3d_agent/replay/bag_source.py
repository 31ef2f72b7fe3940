"""Read a rosbag2 for replay: the wanted topics in log-time order, raw or deserialised, and a
clear error (with everything read before it still delivered) when the bag is truncated or corrupt.

Why not only rosbags' ``AnyReader``: the bags replay has to survive are the ones a robot leaves
behind when the recorder dies. Such an MCAP file has no summary section and no footer (and the
directory often no ``metadata.yaml``); ``AnyReader`` refuses to open it at all. So MCAP files are
read *sequentially* with the ``mcap`` library's stream reader (CRCs checked where the writer set
them): every complete record before the damage is delivered, then :class:`BagReadError` says where
and why reading stopped. Messages are re-ordered by log time in a short window (a recorder writes
in arrival order, which can be slightly out of order); sqlite3 bags go through rosbags' reader,
which sorts them itself. Messages are deserialised with rosbags' Kilted typestore (no rclpy): the
same duck-typed message objects the node's codecs accept. The raw CDR bytes are what the
real-time player publishes.

Also: which topics the bag holds (with a suggestion when a configured topic is missing), its time
span, and the sha256 of its files (summary.json records it, so results name their exact input).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import struct
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "BagOpenError",
    "BagReadError",
    "BagTopic",
    "BagMessage",
    "BagSource",
    "ROLE_TYPES",
    "ROLE_OPTIONS",
]

log = logging.getLogger(__name__)

_IMAGE: Final = "sensor_msgs/msg/Image"
_COMPRESSED: Final = "sensor_msgs/msg/CompressedImage"
_INFO: Final = "sensor_msgs/msg/CameraInfo"
_TF: Final = "tf2_msgs/msg/TFMessage"
#: message types each input role accepts
ROLE_TYPES: Final = {
    "color": (_IMAGE, _COMPRESSED),
    "depth": (_IMAGE, _COMPRESSED),
    "color_info": (_INFO,),
    "depth_info": (_INFO,),
    "tf": (_TF,),
    "tf_static": (_TF,),
}
#: the command-line option that names each role's topic (used in error messages)
ROLE_OPTIONS: Final = {"color": "--rgb-topic", "depth": "--depth-topic", "color_info": "--camera-info-topic",
                       "depth_info": "--depth-info-topic", "tf": "--tf-topic", "tf_static": "--tf-static-topic"}
_OPTIONAL_ROLES: Final = ("tf", "tf_static")  # a bag may carry its whole tree on one of them
#: log-time window within which out-of-order messages of a sequential MCAP read are put back in order
REORDER_WINDOW_NS: Final = 1_000_000_000
_HASH_BLOCK: Final = 1 << 20


class BagOpenError(ValueError):
    """The path is not a readable bag, or it lacks the topics the replay needs."""


class BagReadError(RuntimeError):
    """Reading stopped early: the bag is truncated or corrupt. Everything before it was delivered.

    Attributes:
        reason: what the reader found.
        messages_read: messages delivered before the error (of the topics being read).
        last_time_ns: log time of the last message delivered (None if none).
        start_ns: the bag's start, for "seconds into the bag" in messages.
    """

    def __init__(self, path: Path, reason: str, messages_read: int, last_time_ns: int | None, start_ns: int | None) -> None:
        self.path = path
        self.reason = reason
        self.messages_read = messages_read
        self.last_time_ns = last_time_ns
        self.start_ns = start_ns
        where = ""
        if last_time_ns is not None and start_ns is not None:
            where = f", the last at {(last_time_ns - start_ns) / 1e9:.3f} s into the bag"
        super().__init__(f"bag {path} is truncated or corrupt: {reason} (read {messages_read} message(s) before it{where})")


@dataclass(frozen=True)
class BagTopic:
    """One topic of the bag: its name, message type and message count (None when unknown)."""

    name: str
    msgtype: str
    count: int | None


@dataclass(frozen=True)
class BagMessage:
    """One message as stored: raw CDR bytes, the topic's role in the replay, and its log time."""

    topic: str
    role: str
    log_time_ns: int
    msgtype: str
    raw: bytes


def _dir_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes) and not p.name.startswith("."))


class BagSource:
    """A bag opened for replay (see the module doc). Cheap to construct: no message is read.

    Args:
        path: a rosbag2 directory (with or without ``metadata.yaml``) or a single ``.mcap`` file.

    Raises:
        BagOpenError: nothing readable at ``path``, an unsupported layout (file-compressed bags),
            or an MCAP file so damaged that not even its topics can be found.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.metadata: dict[str, Any] | None = None
        self.notes: list[str] = []
        #: per-topic messages delivered by the last :meth:`messages` call
        self.read_counts: Counter[str] = Counter()
        self._topics: dict[str, BagTopic] = {}
        self._start_ns: int | None = None
        self._end_ns: int | None = None
        self._typestore: Any = None
        if not self.path.exists():
            raise BagOpenError(f"bag {self.path} does not exist")
        if self.path.is_file():
            if self.path.suffix != ".mcap":
                raise BagOpenError(f"{self.path}: a single file must be an .mcap file; pass the bag directory for other storages")
            self.storage, self.files = "mcap", [self.path]
        else:
            self._open_dir()
        self._read_topics()

    # -- layout ------------------------------------------------------------------------------------
    def _open_dir(self) -> None:
        import yaml

        meta_path = self.path / "metadata.yaml"
        if meta_path.is_file():
            try:
                doc = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
                info = doc["rosbag2_bagfile_information"]
            except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
                raise BagOpenError(f"{meta_path}: not a rosbag2 metadata file ({exc})") from None
            self.metadata = info
            storage = str(info.get("storage_identifier", ""))
            if info.get("compression_mode") == "file" or info.get("compression_format"):
                if info.get("compression_mode") == "file":
                    raise BagOpenError(f"{self.path}: file-compressed bags ({info.get('compression_format')}) are not supported; "
                                       "decompress it first (ros2 bag convert, or rosbags-convert)")
            files = [self.path / f for f in info.get("relative_file_paths", [])]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise BagOpenError(f"{self.path}: metadata.yaml lists file(s) that are missing: {', '.join(missing)}")
            if storage not in ("mcap", "sqlite3"):
                raise BagOpenError(f"{self.path}: storage {storage!r} is not supported (mcap or sqlite3)")
            self.storage, self.files = storage, files
            return
        mcaps = _dir_files(self.path, (".mcap",))
        if mcaps:
            self.storage, self.files = "mcap", mcaps
            self.notes.append(f"{self.path} has no metadata.yaml (the recording did not finish?): reading its "
                              f"{len(mcaps)} MCAP file(s) directly")
            return
        if _dir_files(self.path, (".db3",)):
            raise BagOpenError(f"{self.path}: an sqlite3 bag without metadata.yaml cannot be read; run 'ros2 bag reindex {self.path}'")
        raise BagOpenError(f"{self.path} is not a rosbag2: no metadata.yaml and no .mcap file in it")

    def _read_topics(self) -> None:
        if self.metadata is not None:
            for entry in self.metadata.get("topics_with_message_count", []):
                tm = entry.get("topic_metadata", {})
                self._topics[tm["name"]] = BagTopic(tm["name"], tm["type"], int(entry.get("message_count", 0)))
            start = self.metadata.get("starting_time", {}).get("nanoseconds_since_epoch")
            dur = self.metadata.get("duration", {}).get("nanoseconds")
            if start is not None:
                self._start_ns = int(start)
                self._end_ns = int(start) + int(dur or 0)
            return
        self._scan_mcap_topics()

    def _scan_mcap_topics(self) -> None:
        """Topics and time span of MCAP files without metadata: the summary if present, else a full scan."""
        from mcap.reader import make_reader
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        counts: Counter[str] = Counter()
        types: dict[str, str] = {}
        start = end = None
        for f in self.files:
            summary = None
            try:
                with f.open("rb") as fh:
                    summary = make_reader(fh).get_summary()
            except Exception:  # no (valid) summary: the file did not end properly
                summary = None
            if summary is not None and summary.statistics is not None:
                st = summary.statistics
                for cid, ch in summary.channels.items():
                    schema = summary.schemas.get(ch.schema_id)
                    types[ch.topic] = schema.name if schema else "?"
                    counts[ch.topic] += st.channel_message_counts.get(cid, 0)
                start = st.message_start_time if start is None else min(start, st.message_start_time)
                end = st.message_end_time if end is None else max(end, st.message_end_time)
                continue
            schemas: dict[int, str] = {}
            channels: dict[int, str] = {}
            try:
                with f.open("rb") as fh:
                    for rec in StreamReader(fh, validate_crcs=True).records:
                        if isinstance(rec, Schema):
                            schemas[rec.id] = rec.name
                        elif isinstance(rec, Channel):
                            channels[rec.id] = rec.topic
                            types[rec.topic] = schemas.get(rec.schema_id, "?")
                        elif isinstance(rec, Message) and rec.channel_id in channels:
                            counts[channels[rec.channel_id]] += 1
                            start = rec.log_time if start is None else min(start, rec.log_time)
                            end = rec.log_time if end is None else max(end, rec.log_time)
            except Exception as exc:
                self.notes.append(f"{f.name}: {_describe(exc)}; its readable part is used")
        if not types:
            raise BagOpenError(f"{self.path}: no topic could be read from {', '.join(f.name for f in self.files)}"
                               + (f" ({'; '.join(self.notes[1:])})" if len(self.notes) > 1 else ""))
        self._topics = {t: BagTopic(t, types[t], counts.get(t, 0)) for t in types}
        self._start_ns, self._end_ns = start, end

    # -- facts -------------------------------------------------------------------------------------
    @property
    def topics(self) -> dict[str, BagTopic]:
        return dict(self._topics)

    @property
    def start_ns(self) -> int:
        """Log time of the first message (the "0 s" of ``ask_at``)."""
        if self._start_ns is None:
            raise BagOpenError(f"{self.path}: the bag holds no message")
        return self._start_ns

    @property
    def end_ns(self) -> int:
        return self._end_ns if self._end_ns is not None else self.start_ns

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def sha256(self) -> str:
        """sha256 over the bag's files (relative name + bytes, sorted): the identity of the input."""
        h = hashlib.sha256()
        files = [self.path] if self.path.is_file() else _dir_files(self.path, ("",))
        for f in files:
            h.update(f.name.encode() + b"\0")
            with f.open("rb") as fh:
                while block := fh.read(_HASH_BLOCK):
                    h.update(block)
        return h.hexdigest()

    def check_topics(self, wanted: Mapping[str, str]) -> dict[str, str]:
        """Check ``{role: topic}`` against the bag; returns ``{topic: role}`` of the topics to read.

        A missing /tf or /tf_static is allowed (noted) as long as one of them is there.

        Raises:
            BagOpenError: a required topic is absent or has the wrong type; the message lists the
                bag's topics of the right type and the option that selects one.
        """
        problems: list[str] = []
        out: dict[str, str] = {}
        for role, topic in wanted.items():
            t = self._topics.get(topic)
            if t is None:
                if role in _OPTIONAL_ROLES:
                    self.notes.append(f"the bag has no {topic} ({role}); transforms come from the other TF topic only")
                    continue
                cands = [f"{b.name} ({b.msgtype}, {b.count} msgs)" for b in self._topics.values() if b.msgtype in ROLE_TYPES[role]]
                hint = f"; topics of a matching type: {', '.join(cands)}; choose one with {ROLE_OPTIONS[role]}" if cands else \
                       f"; the bag has no {' or '.join(ROLE_TYPES[role])} topic at all"
                problems.append(f"{role} topic {topic} is not in the bag{hint}")
                continue
            if t.msgtype not in ROLE_TYPES[role]:
                problems.append(f"{role} topic {topic} carries {t.msgtype}, expected {' or '.join(ROLE_TYPES[role])}")
                continue
            if topic in out:
                problems.append(f"topic {topic} is given for both {out[topic]} and {role}")
                continue
            out[topic] = role
        if not any(r in ("tf", "tf_static") for r in out.values()) and not problems:
            tf_like = [b.name for b in self._topics.values() if b.msgtype == _TF]
            problems.append("the bag has neither of the TF topics given" + (f"; TF topics in it: {', '.join(tf_like)} "
                            "(use --tf-topic / --tf-static-topic)" if tf_like else ": camera poses cannot be resolved"))
        if problems:
            listing = "\n  ".join(f"{b.name}: {b.msgtype} ({b.count} msgs)" for b in sorted(self._topics.values(), key=lambda b: b.name))
            raise BagOpenError("; ".join(problems) + f"\nbag {self.path} holds:\n  {listing}")
        return out

    # -- reading -----------------------------------------------------------------------------------
    def messages(self, topics: Mapping[str, str]) -> Iterator[BagMessage]:
        """Messages of ``{topic: role}`` in log-time order, raw.

        Raises (after delivering every message before the damage):
            BagReadError: a file ends mid-record, a record or CRC is corrupt, or fewer messages are
                found than ``metadata.yaml`` lists.
        """
        self.read_counts = Counter()
        it = self._mcap_messages(topics) if self.storage == "mcap" else self._sqlite_messages(topics)
        last: int | None = None
        n = 0
        for msg in it:
            n += 1
            last = msg.log_time_ns
            self.read_counts[msg.topic] += 1
            yield msg
        if self.metadata is not None:
            short = [f"{t}: {self.read_counts.get(t, 0)} of {self._topics[t].count}" for t in topics
                     if t in self._topics and self._topics[t].count is not None and self.read_counts.get(t, 0) < self._topics[t].count]
            if short:
                raise BagReadError(self.path, "fewer messages than metadata.yaml lists (" + "; ".join(short) + ")", n, last, self._start_ns)

    def _mcap_messages(self, topics: Mapping[str, str]) -> Iterator[BagMessage]:
        from mcap.records import Channel, Footer, Message, Schema
        from mcap.stream_reader import StreamReader

        heap: list[tuple[int, int, BagMessage]] = []
        seq = 0
        delivered = 0
        last: int | None = None
        newest = -1
        error: str | None = None
        for f in self.files:
            schemas: dict[int, str] = {}
            channels: dict[int, tuple[str, str]] = {}
            saw_footer = False
            try:
                with f.open("rb") as fh:
                    for rec in StreamReader(fh, validate_crcs=True).records:
                        if isinstance(rec, Message):
                            ch = channels.get(rec.channel_id)
                            if ch is None or ch[0] not in topics:
                                continue
                            m = BagMessage(ch[0], topics[ch[0]], int(rec.log_time), ch[1], bytes(rec.data))
                            heapq.heappush(heap, (m.log_time_ns, seq, m))
                            seq += 1
                            newest = max(newest, m.log_time_ns)
                            while heap and heap[0][0] <= newest - REORDER_WINDOW_NS:
                                out = heapq.heappop(heap)[2]
                                delivered += 1
                                last = out.log_time_ns
                                yield out
                        elif isinstance(rec, Channel):
                            channels[rec.id] = (rec.topic, schemas.get(rec.schema_id, "?"))
                        elif isinstance(rec, Schema):
                            schemas[rec.id] = rec.name
                        elif isinstance(rec, Footer):
                            saw_footer = True
            except Exception as exc:  # the mcap reader raises several kinds; all mean "damaged here"
                error = f"{f.name}: {_describe(exc)}"
            if error is None and not saw_footer:
                error = f"{f.name}: the file ends without the MCAP footer (the recording was cut off)"
            if error is not None:
                break
        while heap:
            out = heapq.heappop(heap)[2]
            delivered += 1
            last = out.log_time_ns
            yield out
        if error is not None:
            raise BagReadError(self.path, error, delivered, last, self._start_ns)

    def _sqlite_messages(self, topics: Mapping[str, str]) -> Iterator[BagMessage]:
        from rosbags.rosbag2 import Reader

        delivered = 0
        last: int | None = None
        try:
            with Reader(self.path) as reader:
                conns = [c for c in reader.connections if c.topic in topics]
                for conn, t, raw in reader.messages(connections=conns):
                    delivered += 1
                    last = int(t)
                    yield BagMessage(conn.topic, topics[conn.topic], int(t), conn.msgtype, bytes(raw))
        except BagReadError:
            raise
        except Exception as exc:  # sqlite3.DatabaseError, rosbags ReaderError, ...
            raise BagReadError(self.path, _describe(exc), delivered, last, self._start_ns) from None

    def deserialize(self, msg: BagMessage) -> Any:
        """The message as a rosbags object (duck-compatible with rclpy messages for our codecs)."""
        if self._typestore is None:
            from rosbags.typesys import Stores, get_typestore

            self._typestore = get_typestore(Stores.ROS2_KILTED)
        try:
            return self._typestore.deserialize_cdr(msg.raw, msg.msgtype)
        except KeyError:
            raise BagOpenError(f"message type {msg.msgtype} of {msg.topic} is unknown to the ROS 2 Kilted typestore") from None


def _describe(exc: BaseException) -> str:
    """A readable reason for a reader exception (EndOfFile has no message of its own)."""
    name = type(exc).__name__
    text = str(exc).strip()
    if name == "EndOfFile":
        return "the file ends in the middle of a record (truncated)"
    if name == "InvalidMagic":
        return f"not an MCAP file, or its header is damaged ({text})" if text else "not an MCAP file, or its header is damaged"
    if name == "RecordLengthLimitExceeded":
        return f"a record claims an impossible length (corrupt data: {text})"
    if isinstance(exc, (OverflowError, MemoryError, struct.error, UnicodeDecodeError)):
        return f"a record header is corrupt ({name}: {text})"
    return f"{name}: {text}" if text else name
