#!/usr/bin/env python3
"""Publish messages the way pycti's `OpenCTIConnectorHelper._send_bundle` does, for the publish benchmark.

pika `BlockingConnection`, `channel.confirm_delivery()`, then one `basic_publish` per message with
`delivery_mode=2, content_encoding="utf-8"`: in confirm mode pika waits for each message's confirm before returning,
so messages go one round trip at a time. (pycti also opens a new connection per bundle; this script keeps one for the
whole run, which favours it.)

Usage: python pycti_publish.py MESSAGES_FILE EXCHANGE ROUTING_KEY
MESSAGES_FILE holds the message bodies, each preceded by its length as 4 bytes big-endian. Prints the seconds taken.
"""

import struct
import sys
import time

import pika


def main():
    path, exchange, routing_key = sys.argv[1:4]
    bodies = []
    with open(path, "rb") as handle:
        while header := handle.read(4):
            (length,) = struct.unpack(">I", header)
            bodies.append(handle.read(length))
    parameters = pika.ConnectionParameters(
        host="127.0.0.1", port=5672, virtual_host="/", credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=10)
    connection = pika.BlockingConnection(parameters)
    channel = connection.channel()
    channel.confirm_delivery()
    properties = pika.BasicProperties(delivery_mode=2, content_encoding="utf-8")
    started = time.monotonic()
    for body in bodies:
        channel.basic_publish(exchange=exchange, routing_key=routing_key, body=body, properties=properties)
    elapsed = time.monotonic() - started
    channel.close()
    connection.close()
    print(f"{elapsed:.6f}")


if __name__ == "__main__":
    main()
