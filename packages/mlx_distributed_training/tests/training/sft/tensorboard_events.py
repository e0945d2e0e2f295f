"""Reader of TensorBoard event files for tests, on tensorboardX's protobufs."""

import struct
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event


def read_event_file(path: Path) -> list[Event]:
    """Parse one TFRecord file: per record a u64 length, a u32 CRC, the
    payload and a u32 CRC. The CRCs are not checked."""
    data = path.read_bytes()
    events = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        payload = data[offset + 12 : offset + 12 + length]
        events.append(Event.FromString(payload))
        offset += 12 + length + 4
    return events


def read_event_files(folder: Path) -> list[list[Event]]:
    """Events of every file in `folder`, one list per file, oldest file first."""
    files = sorted(folder.glob("events.out.tfevents.*"))
    return [read_event_file(path) for path in files]


def scalar_steps(events: list[Event], tag: str) -> list[int]:
    return [
        event.step
        for event in events
        if any(value.tag == tag for value in event.summary.value)
    ]
