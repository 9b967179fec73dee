"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu's own transport creates a message file and then writes it, while a worker lists the
folder and reads whatever it finds: a worker polling at the wrong moment reads an empty file,
fails to decode it and stops, and the message is lost. Here a message is written under a name
no reader picks up and renamed into place (a rename is atomic), a reader claims a file by
renaming it (so two workers never take the same one), and a file that cannot be decoded is
logged and skipped instead of stopping the worker.
"""

import logging
import os
import uuid
from queue import Empty
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

SCHEME = "crmfs"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")
        with open(partial, "wb") as file:
            file.write(str_to_bytes(dumps(payload)))
        os.replace(partial, os.path.join(self.data_folder_out, name))

    def _get(self, queue):
        wanted = f"{queue}.msg"
        claimed_folder = os.path.join(self.data_folder_in, "claimed")
        os.makedirs(claimed_folder, exist_ok=True)
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(claimed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another worker took it first
            with open(claimed, "rb") as file:
                payload = file.read()
            os.remove(claimed)
            try:
                return loads(bytes_to_str(payload))
            except ValueError:
                logger.error("Skipped an unreadable message file %s", name)
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES[SCHEME] = "crm.broker:Transport"
