"""A real SMTP server for the test suite (aiosmtpd): every message it accepts is written to
DIR as <n>.eml, with the envelope in <n>.json.

    python3 tests/smtp/server.py PORT DIR

Prints "ready" on stdout once it listens; stops on SIGTERM.
"""
import argparse
import json
import os
import signal
import threading

from aiosmtpd.controller import Controller


class Store:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        with open(os.path.join(self.directory, f"{n}.eml"), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(os.path.join(self.directory, f"{n}.json"), "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos}, f)
        return "250 OK"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("directory")
    args = parser.parse_args()
    controller = Controller(Store(args.directory), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
