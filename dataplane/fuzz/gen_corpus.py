#!/usr/bin/env python3
"""Writes the seed corpus of the parse_frame fuzz target.

Naming, relied on by dataplane/tests/wire_fuzz_corpus.rs:
  valid_nfv_*  a UdpFrame whose payload is a valid NFVinc message
  valid_*      a UdpFrame (the payload may be anything)
  bad_*        not a UdpFrame
Anything else (seeds the fuzzer found) must only not panic.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "parse_frame")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


SRC, DST = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])


def frame(payload, *, ihl=5, options=b"", total=None, udp_len=None, flags=0x4000,
          proto=17, ethertype=0x0800, udp_csum=True, ip_csum=True, pad=0):
    udp_len = 8 + len(payload) if udp_len is None else udp_len
    udp = struct.pack("!HHHH", 40000, 9000, udp_len, 0) + payload
    if udp_csum:
        pseudo = SRC + DST + struct.pack("!BBH", 0, 17, 8 + len(payload))
        c = csum(pseudo + udp) or 0xFFFF
        udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    hlen = ihl * 4
    total = hlen + len(udp) if total is None else total
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 0, flags, 64, proto, 0, SRC, DST) + options
    if ip_csum:
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]) + struct.pack("!H", ethertype)
    return eth + ip + udp + b"\0" * pad


def nfv(service, payload, tag=None, flags=None, magic=0x4E46, version=1):
    f = (1 if tag else 0) if flags is None else flags
    return struct.pack("!HBBBBHQ", magic, version, service, 7, f, len(payload), 0x1122334455667788) + \
        (tag or b"\0" * 16) + payload


SEEDS = {
    "valid_udp_hello": frame(b"hello"),
    "valid_udp_no_checksum": frame(b"no checksum", udp_csum=False),
    "valid_padded_to_60": frame(b"hi", pad=60 - 44),
    "valid_ipv4_options": frame(b"opts", ihl=6, options=b"\x01\x01\x01\x00"),
    "valid_frame_bad_nfv_magic": frame(nfv(0, b"x", magic=0x4E47)),
    "valid_frame_bad_nfv_service": frame(nfv(9, b"x")),
    "valid_frame_nfv_truncated": frame(nfv(1, b"12345678")[:-3]),
    "valid_nfv_echo": frame(nfv(0, b"echo me!")),
    "valid_nfv_consensus_tagged": frame(nfv(2, b"\x00" * 24, tag=bytes(range(16)))),
    "valid_nfv_empty_payload": frame(nfv(3, b"")),
    "bad_empty": b"",
    "bad_truncated_ethernet": frame(b"hello")[:10],
    "bad_truncated_ipv4": frame(b"hello")[:30],
    "bad_ihl_4": frame(b"hello", ihl=4),
    "bad_ihl_15": frame(b"hello", ihl=15),
    "bad_total_len_below_header": frame(b"hello", total=19),
    "bad_total_len_past_buffer": frame(b"hello", total=200),
    "bad_udp_len_below_header": frame(b"hello", udp_len=7),
    "bad_udp_len_past_packet": frame(b"hello", udp_len=64),
    "bad_fragment_more": frame(b"hello", flags=0x2000),
    "bad_fragment_offset": frame(b"hello", flags=0x00B9),
    "bad_not_udp": frame(b"hello", proto=6),
    "bad_ethertype_ipv6": frame(b"hello", ethertype=0x86DD),
    "bad_ipv4_checksum": frame(b"hello", ip_csum=False),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"wrote {len(SEEDS)} seeds to {OUT}")
