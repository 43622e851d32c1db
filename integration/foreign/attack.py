#!/usr/bin/env python3
"""A foreign QUIC stack (aioquic) as a hostile peer of one superpeer node.

Run by integration/tests/foreign_quic.rs against a supernode and a leaf; prints one JSON line
saying, per attack, what was sent and what came back. The Rust test decides what is
acceptable; this script only attacks and counts.

Our nodes speak TLS 1.3 with raw Ed25519 public keys (RFC 7250) both ways and the ALPN
`superpeer/1`. aioquic as shipped offers neither raw keys nor our ALPN, so most handshakes
here must end in the node's refusal, and that refusal path is what is under test:

- alpn_*: handshakes offering h3, superpeer/2, no ALPN at all, an empty ALPN name.
- no_client_key, x509_client_cert: the right ALPN from aioquic as shipped (X.509 only), with no
  client certificate and with a self-signed Ed25519 X.509 one.
- rpk_*: aioquic taught just enough of RFC 7250 (the two certificate-type extensions, a raw key
  as the server's certificate) to get past the ClientHello: then it presents no key, an X.509
  certificate where a raw key belongs, a raw key it cannot sign for, or a raw key with another
  behind it as a chain. rpk_own_key presents a key it holds: the one foreign handshake the node
  should confirm, which shows the refusals come from the key checks; it then says nothing, and
  the node must close it at its hello timeout.
- version_negotiation: long-header packets of version 0x1a2a3a4a, 1200 bytes (answered with
  Version Negotiation listing version 1) and shorter (RFC 9000: dropped).
- mangled_raw: aioquic's real Initial datagrams with bits flipped, header bytes flipped,
  truncated, or garbage appended, over a raw UDP socket; pristine ones as the control.
- mangled_sealed: aioquic's ClientHello (raw-key flavour) mangled and sealed again in a valid
  Initial, so it gets past packet protection into TLS: byte flips, truncation, length fields
  overwritten, a CRYPTO offset far out, frames an Initial may not carry, the hello twice.
- zero_rtt: 0-RTT packets with no ticket behind them, alone and after a real Initial.
- migration: short-header packets from fresh ports with random connection ids, and with the
  connection id the node chose for a handshake under way (learned from its Initial).
- crowd: hundreds of aioquic handshakes at once.
- stalled_handshakes: hundreds of handshakes at once that send half a ClientHello and stop.
- garbage: thousands of random datagrams of random sizes.

Every raw attack counts bytes sent and answered, so the caller can check the node never
amplifies (RFC 9000 8.1: at most three times what an unvalidated address sent).

The raw-key teaching reaches into aioquic's internals (its TLS context's certificate handling,
the connection's close and confirmation state): requirements.txt pins the version it was
written against.
"""

import argparse
import asyncio
import datetime
import json
import random
import socket
import ssl
import sys
import time

from aioquic import tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer, encode_uint_var
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import CryptoError, CryptoPair
from aioquic.quic.packet import QuicPacketType, pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

ALPN = "superpeer/1"
# The name our clients send; raw keys carry no names, so any would do.
SERVER_NAME = "superpeer.invalid"
QUIC_V1 = 0x00000001
UNKNOWN_VERSION = 0x1A2A3A4A
# Connection ids quinn issues are 8 bytes: what a short header carries to it.
NODE_CID_LEN = 8
# RFC 7250 extensions and the raw public key certificate type.
CLIENT_CERTIFICATE_TYPE = 19
SERVER_CERTIFICATE_TYPE = 20
RAW_PUBLIC_KEY = 2
# How long a raw socket listens for answers after its last packet.
LISTEN = 1.0


# ----- aioquic with raw public keys -----


class RawKey:
    """A raw public key (SubjectPublicKeyInfo DER) where aioquic expects an X.509 certificate:
    it needs public_key() to check a signature and public_bytes() to send it."""

    def __init__(self, der):
        self.der = der

    def public_key(self):
        return serialization.load_der_public_key(self.der)

    def public_bytes(self, _encoding):
        return self.der


class RawKeyContext(tls.Context):
    """aioquic's TLS context, taking the server's certificate as a raw key."""

    def _set_peer_certificate(self, certificate):
        try:
            self._peer_certificate = RawKey(certificate.certificates[0][0])
            self._peer_certificate.public_key()
        except ValueError as exc:
            raise tls.AlertBadCertificate("not a raw public key") from exc
        self._peer_certificate_chain = []


class ForeignConnection(QuicConnection):
    """An aioquic connection that remembers whether the peer closed it, and optionally offers
    raw public keys both ways."""

    def __init__(self, *args, raw_keys=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.raw_keys = raw_keys
        self.closed_by_peer = False

    def _initialize(self, peer_cid):
        super()._initialize(peer_cid)
        if self.raw_keys:
            self.tls.__class__ = RawKeyContext
            offer = bytes([1, RAW_PUBLIC_KEY])
            self.tls.handshake_extensions += [
                (CLIENT_CERTIFICATE_TYPE, offer),
                (SERVER_CERTIFICATE_TYPE, offer),
            ]

    def _handle_connection_close_frame(self, context, frame_type, buf):
        self.closed_by_peer = True
        super()._handle_connection_close_frame(context, frame_type, buf)


def spki(key):
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def self_signed(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "foreign")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, None)
    )


def client_config(alpn, certificate=None, private_key=None, chain=()):
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=alpn,
        verify_mode=ssl.CERT_NONE,
        server_name=SERVER_NAME,
        idle_timeout=10.0,
    )
    config.certificate = certificate
    config.certificate_chain = list(chain)
    config.private_key = private_key
    return config


# The handshakes, by name: (ALPN offered, raw keys offered, certificate, key it signs with,
# certificates after the first).
def handshake_variants():
    key = ed25519.Ed25519PrivateKey.generate()
    other = ed25519.Ed25519PrivateKey.generate()
    return {
        "alpn_h3": (["h3"], False, None, None, ()),
        "alpn_superpeer/2": (["superpeer/2"], False, None, None, ()),
        "alpn_none": (None, False, None, None, ()),
        "alpn_empty": ([""], False, None, None, ()),
        "no_client_key": ([ALPN], False, None, None, ()),
        "x509_client_cert": ([ALPN], False, self_signed(key), key, ()),
        "rpk_no_client_key": ([ALPN], True, None, None, ()),
        "rpk_x509_as_key": ([ALPN], True, self_signed(key), key, ()),
        "rpk_wrong_signature": ([ALPN], True, RawKey(spki(key)), other, ()),
        # A raw key comes alone: one with a "chain" behind it is refused.
        "rpk_key_with_chain": ([ALPN], True, RawKey(spki(key)), key, [RawKey(spki(other))]),
        "rpk_own_key": ([ALPN], True, RawKey(spki(key)), key, ()),
    }


async def handshake(target, bind, variant, timeout, hold=0.0):
    """One aioquic handshake; how it ended. `hold`: once the node confirms the handshake, how
    long to wait for it to close the connection (we say nothing)."""
    alpn, raw_keys, certificate, private_key, chain = variant
    conn = ForeignConnection(
        configuration=client_config(alpn, certificate, private_key, chain), raw_keys=raw_keys
    )
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, 0))
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: QuicConnectionProtocol(conn), sock=sock
    )
    started = time.monotonic()
    outcome = {"confirmed": False, "closed_by_peer": False, "code": None, "app": False}
    try:
        protocol.connect(target)
        deadline = started + timeout
        # The client's side of TLS 1.3 is done before the server has checked the client's
        # key: the node's verdict is its HANDSHAKE_DONE, or its close.
        while time.monotonic() < deadline and not conn._close_event:
            if conn._handshake_confirmed:
                outcome["confirmed"] = True
                confirmed_at = time.monotonic()
                if hold > 0:
                    try:
                        await asyncio.wait_for(protocol.wait_closed(), hold)
                    except asyncio.TimeoutError:
                        pass
                    outcome["closed_after_ms"] = int(
                        (time.monotonic() - confirmed_at) * 1000
                    )
                break
            await asyncio.sleep(0.02)
        event = conn._close_event
        if event is not None:
            outcome["closed_by_peer"] = conn.closed_by_peer
            outcome["code"] = event.error_code
            # An application close (no frame type) comes only after the handshake.
            outcome["app"] = event.frame_type is None
            outcome["reason"] = event.reason_phrase
    finally:
        protocol.close()
        transport.close()
    outcome["ms"] = int((time.monotonic() - started) * 1000)
    return outcome


def tally(outcomes):
    """Handshake outcomes summed: confirmed by the node, refused by it (its close before any
    confirmation), timed out, or ended by aioquic itself."""
    summary = {
        "attempts": len(outcomes),
        "confirmed": 0,
        "refused": 0,
        "timed_out": 0,
        "ended_by_us": 0,
        "codes": {},
        "reasons": [],
        "slowest_ms": max((o["ms"] for o in outcomes), default=0),
    }
    for o in outcomes:
        if o["confirmed"]:
            summary["confirmed"] += 1
        elif o["closed_by_peer"]:
            summary["refused"] += 1
        elif o["code"] is None:
            summary["timed_out"] += 1
        else:
            summary["ended_by_us"] += 1
        if o["code"] is not None:
            code = ("app:" if o["app"] else "") + hex(o["code"])
            summary["codes"][code] = summary["codes"].get(code, 0) + 1
            if o.get("reason") and o["reason"] not in summary["reasons"]:
                summary["reasons"].append(o["reason"])
        if "closed_after_ms" in o:
            summary["closed_after_ms"] = max(
                summary.get("closed_after_ms", 0), o["closed_after_ms"]
            )
    return summary


async def handshakes(target, bind, per_variant, timeout, hold):
    variants = handshake_variants()
    jobs = {}
    for name, variant in variants.items():
        # Only the control is confirmed; the node closes it at its hello timeout.
        wait = hold if name == "rpk_own_key" else 0.0
        jobs[name] = [
            handshake(target, bind, variant, timeout, wait) for _ in range(per_variant)
        ]
    results = {}
    for name, batch in jobs.items():
        results[name] = asyncio.gather(*batch)
    return {name: tally(await outcomes) for name, outcomes in results.items()}


async def crowd(target, sources, size, timeout):
    """`size` handshakes at once, half from aioquic as shipped, half offering raw keys and then
    no key (the node does a full handshake's work for those before refusing)."""
    variants = handshake_variants()
    kinds = [variants["no_client_key"], variants["rpk_no_client_key"]]
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(
            handshake(target, sources[i % len(sources)], kinds[i % 2], timeout)
            for i in range(size)
        )
    )
    summary = tally(outcomes)
    summary["sources"] = len(sources)
    summary["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    return summary


# ----- raw packets -----


class Collector(asyncio.DatagramProtocol):
    def __init__(self):
        self.got = []

    def datagram_received(self, data, addr):
        self.got.append(data)


class Raw:
    """A UDP socket of its own, and every datagram that comes back to it."""

    def __init__(self, transport, collector, target):
        self.transport = transport
        self.collector = collector
        self.target = target
        self.sent = 0
        self.bytes_sent = 0

    @classmethod
    async def open(cls, bind, target):
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((bind, 0))
        transport, collector = await loop.create_datagram_endpoint(Collector, sock=sock)
        return cls(transport, collector, target)

    def send(self, data):
        self.transport.sendto(data, self.target)
        self.sent += 1
        self.bytes_sent += len(data)

    @property
    def got(self):
        return self.collector.got

    def close(self):
        self.transport.close()


def kind_of(datagram):
    """What a datagram from the node is, by its first packet."""
    if not datagram:
        return "empty"
    first = datagram[0]
    if not first & 0x80:
        # A stateless reset (the node has no connection for what we sent), or the 1-RTT
        # packets a server may send before the client's Finished.
        return "short_header"
    if len(datagram) >= 5 and int.from_bytes(datagram[1:5], "big") == 0:
        return "version_negotiation"
    return {0: "initial", 1: "zero_rtt", 2: "handshake", 3: "retry"}[(first >> 4) & 3]


def answered(raws, extra=None):
    """Counts over some raw sockets: sent, answered, bytes each way, answers by kind."""
    got = [d for r in raws for d in r.got]
    by_kind = {}
    for d in got:
        k = kind_of(d)
        by_kind[k] = by_kind.get(k, 0) + 1
    summary = {
        "sent": sum(r.sent for r in raws),
        "bytes_sent": sum(r.bytes_sent for r in raws),
        "answered": len(got),
        "bytes_answered": sum(len(d) for d in got),
        "by_kind": by_kind,
    }
    summary.update(extra or {})
    return summary


def long_header(packet_type, version, dcid, scid, token=b""):
    """The unprotected start of a long header, up to the length field."""
    types = {"initial": 0, "zero_rtt": 1, "handshake": 2}
    first = 0xC0 | (types[packet_type] << 4) | 0x03  # 4-byte packet number
    header = bytes([first]) + version.to_bytes(4, "big")
    header += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    if packet_type == "initial":
        header += encode_uint_var(len(token)) + token
    return header


def sealed_initial(dcid, scid, payload, token=b"", size=1200, packet_number=0):
    """A client Initial carrying `payload` (frames), protected as RFC 9001 says, padded so the
    datagram is `size` bytes (a node drops smaller Initials)."""
    start = long_header("initial", QUIC_V1, dcid, scid, token)
    # The length field takes 2 bytes, the packet number 4, the AEAD tag 16.
    room = size - len(start) - 2 - 4 - 16
    payload = payload + b"\x00" * max(0, room - len(payload))
    length = 4 + len(payload) + 16
    header = start + (0x4000 | length).to_bytes(2, "big") + packet_number.to_bytes(4, "big")
    pair = CryptoPair()
    pair.setup_initial(dcid, is_client=True, version=QUIC_V1)
    return pair.encrypt_packet(header, payload, packet_number)


def crypto_frame(offset, data):
    return b"\x06" + encode_uint_var(offset) + encode_uint_var(len(data)) + data


def pristine_initial(raw_keys=False):
    """aioquic's own first datagram: a 1200-byte Initial with its ClientHello."""
    config = client_config([ALPN])
    conn = ForeignConnection(configuration=config, raw_keys=raw_keys)
    now = time.time()
    conn.connect(("127.0.0.1", 9), now=now)
    return conn.datagrams_to_send(now=now)[0][0]


def client_hello_of(datagram):
    """The ClientHello inside a client's Initial datagram (decrypted with the Initial keys)."""
    buf = Buffer(data=datagram)
    header = pull_quic_header(buf, host_cid_length=NODE_CID_LEN)
    pair = CryptoPair()
    pair.setup_initial(header.destination_cid, is_client=False, version=QUIC_V1)
    _, payload, _ = pair.decrypt_packet(datagram[: header.packet_length], buf.tell(), 0)
    chunks = {}
    frames = Buffer(data=payload)
    while not frames.eof():
        kind = frames.pull_uint_var()
        if kind == 0x06:
            offset = frames.pull_uint_var()
            chunks[offset] = frames.pull_bytes(frames.pull_uint_var())
        elif kind not in (0x00, 0x01):
            break
    hello = b""
    for offset in sorted(chunks):
        hello = hello[:offset] + chunks[offset]
    return hello


def server_initial_verdict(datagram, dcid):
    """What the node said in its Initial packets to a client Initial sent to `dcid`: its close
    code ("close:0x..."), "server_hello", "ack_only", or "undecryptable"."""
    buf = Buffer(data=datagram)
    verdict = None
    while not buf.eof():
        start = buf.tell()
        try:
            header = pull_quic_header(buf, host_cid_length=NODE_CID_LEN)
        except ValueError:
            break
        end = start + header.packet_length
        if header.packet_type == QuicPacketType.INITIAL:
            pair = CryptoPair()
            pair.setup_initial(dcid, is_client=True, version=QUIC_V1)
            try:
                _, payload, _ = pair.decrypt_packet(datagram[start:end], buf.tell(), 0)
            except CryptoError:
                return "undecryptable"
            frames = frame_summary(payload)
            if "close" in frames:
                return "close:" + hex(frames["close"])
            if frames.get("crypto"):
                verdict = "server_hello"
            verdict = verdict or "ack_only"
        elif header.packet_type == QuicPacketType.RETRY:
            return "retry"
        buf.seek(end)
    return verdict or "other"


def frame_summary(payload):
    """The frames of a decrypted Initial that matter here: CRYPTO data, a close's code."""
    found = {}
    buf = Buffer(data=payload)
    try:
        while not buf.eof():
            kind = buf.pull_uint_var()
            if kind in (0x00, 0x01):
                continue
            if kind in (0x02, 0x03):
                buf.pull_uint_var()
                buf.pull_uint_var()
                ranges = buf.pull_uint_var()
                buf.pull_uint_var()
                for _ in range(ranges * 2):
                    buf.pull_uint_var()
                if kind == 0x03:
                    for _ in range(3):
                        buf.pull_uint_var()
            elif kind == 0x06:
                buf.pull_uint_var()
                buf.pull_bytes(buf.pull_uint_var())
                found["crypto"] = True
            elif kind == 0x1C:
                found["close"] = buf.pull_uint_var()
                return found
            else:
                return found
    except ValueError:
        pass
    return found


def retry_of(datagrams):
    """The (new destination cid, token) of a Retry among `datagrams`, if any."""
    for d in datagrams:
        if kind_of(d) == "retry":
            header = pull_quic_header(Buffer(data=d), host_cid_length=NODE_CID_LEN)
            return header.source_cid, header.token
    return None


async def version_negotiation(target, bind, rng):
    """Unknown versions: 1200-byte long headers must draw a Version Negotiation that lists
    version 1 and echoes our connection ids; shorter ones must be dropped."""
    long_ones, short_ones = await Raw.open(bind, target), await Raw.open(bind, target)
    sent_cids = []
    for i in range(5):
        dcid, scid = rng.randbytes(8 + i), rng.randbytes(8)
        sent_cids.append((dcid, scid))
        body = long_header("initial", UNKNOWN_VERSION, dcid, scid)
        long_ones.send(body + rng.randbytes(1200 - len(body)))
        short = long_header("initial", UNKNOWN_VERSION, rng.randbytes(8), rng.randbytes(8))
        short_ones.send(short + rng.randbytes(rng.randrange(0, 1100)))
        await asyncio.sleep(0.05)
    await asyncio.sleep(LISTEN)
    versions, echoed = set(), 0
    for d in long_ones.got:
        if kind_of(d) != "version_negotiation":
            continue
        header = pull_quic_header(Buffer(data=d), host_cid_length=NODE_CID_LEN)
        versions.update(header.supported_versions)
        if (header.source_cid, header.destination_cid) in sent_cids:
            echoed += 1
    summary = answered(
        [long_ones],
        {
            "versions": sorted(f"0x{v:08x}" for v in versions),
            "lists_v1": QUIC_V1 in versions,
            "cids_echoed": echoed,
            "short_sent": short_ones.sent,
            "short_answered": len(short_ones.got),
        },
    )
    long_ones.close()
    short_ones.close()
    return summary


def flip_bits(data, rng, count, lo=0, hi=None):
    data = bytearray(data)
    hi = len(data) if hi is None else hi
    for _ in range(count):
        data[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return bytes(data)


async def mangled_raw(target, bind, rng):
    """aioquic's real Initials, mangled as datagrams: packet protection must catch it all. (aioquic
    pads the datagram, not the packet, to 1200 bytes: flips go into the packet itself.)"""

    def packet_length(datagram):
        return pull_quic_header(Buffer(data=datagram), NODE_CID_LEN).packet_length

    variants = {
        "pristine": (3, lambda d: d),
        "bit_flips": (40, lambda d: flip_bits(d, rng, rng.randrange(1, 9), 0, packet_length(d))),
        # First byte, version, connection ids and their lengths, token length, length.
        "header_flips": (40, lambda d: flip_bits(d, rng, 1, 0, 30)),
        "truncated": (30, lambda d: d[: rng.randrange(1, len(d))]),
        "trailing_garbage": (10, lambda d: d + rng.randbytes(rng.randrange(1, 300))),
    }
    summary = {}
    for name, (count, mangle) in variants.items():
        raw = await Raw.open(bind, target)
        for _ in range(count):
            raw.send(mangle(pristine_initial()))
            await asyncio.sleep(0.01)
        await asyncio.sleep(LISTEN / 2)
        summary[name] = answered([raw])
        raw.close()
    return summary


def sealed_variants(rng):
    """Mangled ClientHellos, as the frames of an Initial: each passes packet protection. Each
    takes a fresh ClientHello of aioquic's (raw-key flavour) and its source connection id, which
    the hello's transport parameters name (another id would be refused before TLS)."""

    def fresh():
        datagram = pristine_initial(raw_keys=True)
        scid = pull_quic_header(Buffer(data=datagram), NODE_CID_LEN).source_cid
        return client_hello_of(datagram), scid

    def flips():
        hello, scid = fresh()
        return crypto_frame(0, flip_bits(hello, rng, rng.randrange(1, 9))), scid

    def truncated():
        hello, scid = fresh()
        return crypto_frame(0, hello[: rng.randrange(1, len(hello))]), scid

    def length_fields():
        hello, scid = fresh()
        mangled = bytearray(hello)
        at = rng.randrange(0, len(hello) - 2)
        mangled[at : at + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"\x7f\xff"])
        return crypto_frame(0, bytes(mangled)), scid

    def far_offset():
        hello, scid = fresh()
        offset = rng.choice([1 << 20, 1 << 40, (1 << 62) - 200])
        return crypto_frame(offset, hello[:100]), scid

    def forbidden_frames():
        hello, scid = fresh()
        # A STREAM frame, HANDSHAKE_DONE, NEW_TOKEN: none may travel in an Initial.
        frame = rng.choice([b"\x0f\x00\x00\x04abcd", b"\x1e", b"\x07\x04abcd"])
        return crypto_frame(0, hello) + frame, scid

    def hello_twice():
        hello, scid = fresh()
        return crypto_frame(0, hello) + crypto_frame(len(hello), hello), scid

    def resealed():
        hello, scid = fresh()
        return crypto_frame(0, hello), scid

    return {
        "resealed_pristine": (3, resealed),
        "client_hello_flips": (30, flips),
        "client_hello_truncated": (10, truncated),
        "length_fields": (20, length_fields),
        "far_crypto_offset": (3, far_offset),
        "forbidden_frames": (6, forbidden_frames),
        "hello_twice": (3, hello_twice),
    }


async def sealed_attempt(target, bind, rng, payload, scid):
    """One Initial of ours carrying `payload`, from a socket of its own with a destination
    connection id of its own; a Retry (the node's gate asking us to prove our address) is
    followed once, as a real client would. The socket, and what the node said."""
    raw = await Raw.open(bind, target)
    dcid = rng.randbytes(8)
    raw.send(sealed_initial(dcid, scid, payload))
    await asyncio.sleep(LISTEN / 2)
    retry = retry_of(raw.got)
    if retry is not None:
        dcid, token = retry
        raw.send(sealed_initial(dcid, scid, payload, token=token))
        await asyncio.sleep(LISTEN / 2)
    verdicts = [server_initial_verdict(d, dcid) for d in raw.got if kind_of(d) == "initial"]
    verdict = next((v for v in verdicts if v.startswith("close")), None)
    verdict = verdict or (verdicts[0] if verdicts else ("retry" if retry else "silent"))
    raw.close()
    return raw, verdict


def verdict_summary(results):
    verdicts = {}
    for _, v in results:
        verdicts[v] = verdicts.get(v, 0) + 1
    return answered([r for r, _ in results], {"verdicts": verdicts})


async def mangled_sealed(target, bind, rng):
    """Mangled ClientHellos sealed in valid Initials: they reach the node's TLS."""
    summary = {}
    for name, (count, make) in sealed_variants(rng).items():
        results = await asyncio.gather(
            *(sealed_attempt(target, bind, rng, *make()) for _ in range(count))
        )
        summary[name] = verdict_summary(results)
    return summary


async def stalled_handshakes(target, sources, rng, count):
    """`count` handshakes at once that never finish: each sends the start of a ClientHello and
    no more. The node holds each until its handshake timeout, as far as its gate lets it
    (verdict "ack_only": held; "close:0x2": refused)."""
    jobs = []
    for i in range(count):
        hello, scid = sealed_variants(rng)["client_hello_truncated"][1]()
        jobs.append(sealed_attempt(target, sources[i % len(sources)], rng, hello, scid))
    return verdict_summary(await asyncio.gather(*jobs))


async def zero_rtt(target, bind, rng):
    """0-RTT with no ticket: alone (no connection to attach to: dropped), and coalesced after a
    real Initial (the Initial is answered; the 0-RTT cannot be decrypted)."""
    alone = await Raw.open(bind, target)
    for _ in range(50):
        header = long_header("zero_rtt", QUIC_V1, rng.randbytes(8), rng.randbytes(8))
        body = rng.randbytes(rng.randrange(100, 1200 - len(header) - 2))
        alone.send(header + (0x4000 | len(body)).to_bytes(2, "big") + body)
    coalesced = await Raw.open(bind, target)
    for _ in range(5):
        initial = pristine_initial()
        dcid = pull_quic_header(Buffer(data=initial), NODE_CID_LEN).destination_cid
        header = long_header("zero_rtt", QUIC_V1, dcid, rng.randbytes(8))
        body = rng.randbytes(200)
        coalesced.send(initial + header + (0x4000 | len(body)).to_bytes(2, "big") + body)
    await asyncio.sleep(LISTEN)
    summary = {"alone": answered([alone]), "after_initial": answered([coalesced])}
    alone.close()
    coalesced.close()
    return summary


def short_header(dcid, rng, size):
    # Fixed bit set, key phase and packet number bits random; the rest looks encrypted.
    first = 0x40 | rng.randrange(0x40)
    return bytes([first]) + dcid + rng.randbytes(max(1, size - 1 - len(dcid)))


async def migration(target, bind, sources, rng):
    """Connection migration from ports (and addresses) the node never saw: short-header packets
    with random connection ids, and with the id the node picked for a live handshake."""
    random_ids = []
    for i in range(20):
        raw = await Raw.open(sources[i % len(sources)], target)
        for _ in range(10):
            raw.send(short_header(rng.randbytes(NODE_CID_LEN), rng, rng.randrange(30, 1200)))
            await asyncio.sleep(0.002)
        random_ids.append(raw)
    # A handshake under way: our Initial from one port, its Initial names the node's id.
    first = await Raw.open(bind, target)
    first.send(pristine_initial(raw_keys=True))
    await asyncio.sleep(0.3)
    node_cid = None
    for d in first.got:
        if kind_of(d) == "initial":
            node_cid = pull_quic_header(Buffer(data=d), NODE_CID_LEN).source_cid
            break
    live = []
    if node_cid is not None:
        for i in range(20):
            raw = await Raw.open(sources[i % len(sources)], target)
            for _ in range(10):
                raw.send(short_header(node_cid, rng, rng.randrange(30, 1200)))
                await asyncio.sleep(0.002)
            live.append(raw)
    await asyncio.sleep(LISTEN)
    summary = {
        "random_cid": answered(random_ids, {"ports": len(random_ids)}),
        "live_cid": answered(live, {"ports": len(live), "learned_cid": node_cid is not None}),
    }
    for raw in random_ids + live + [first]:
        raw.close()
    return summary


async def garbage(target, sources, rng, count):
    """Random datagrams of random sizes from a few sockets, in bursts."""
    raws = [await Raw.open(sources[i % len(sources)], target) for i in range(8)]
    for i in range(count):
        raws[i % len(raws)].send(rng.randbytes(rng.randrange(1, 1501)))
        if i % 100 == 99:
            await asyncio.sleep(0.01)
    await asyncio.sleep(LISTEN)
    summary = answered(raws)
    for raw in raws:
        raw.close()
    return summary


async def attack(args):
    host, port = args.target.rsplit(":", 1)
    target = (host, int(port))
    sources = args.sources.split(",") if args.sources else [args.bind]
    rng = random.Random(args.seed)
    started = time.monotonic()
    timings = {}

    async def timed(name, job):
        began = time.monotonic()
        result = await job
        timings[name] = int((time.monotonic() - began) * 1000)
        return name, result

    # The precise attacks at once; then the crowds and the garbage, which can fill the node's
    # socket buffer, so that a lost packet never blurs what the precise ones check.
    tries = handshakes(target, args.bind, args.per_variant, args.timeout, args.hold)
    precise = await asyncio.gather(
        timed("handshakes", tries),
        timed("version_negotiation", version_negotiation(target, args.bind, rng)),
        timed("mangled_raw", mangled_raw(target, args.bind, rng)),
        timed("mangled_sealed", mangled_sealed(target, args.bind, rng)),
        timed("zero_rtt", zero_rtt(target, args.bind, rng)),
        timed("migration", migration(target, args.bind, sources, rng)),
    )
    attacks = {}
    for name, result in precise:
        if name == "handshakes":
            attacks.update(result)
        else:
            attacks[name] = result
    attacks["crowd"] = (await timed("crowd", crowd(target, sources, args.crowd, args.timeout)))[1]
    stalled = stalled_handshakes(target, sources, rng, args.stalled)
    attacks["stalled_handshakes"] = (await timed("stalled_handshakes", stalled))[1]
    attacks["garbage"] = (await timed("garbage", garbage(target, sources, rng, args.garbage)))[1]
    return {
        "target": args.target,
        "elapsed_ms": int((time.monotonic() - started) * 1000),
        "phase_ms": timings,
        "attacks": attacks,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the node's QUIC socket")
    parser.add_argument("--bind", default="0.0.0.0", help="source address of the attacks")
    parser.add_argument(
        "--sources",
        default="",
        help="comma-separated source addresses for the crowd, migration and garbage "
        "(default: --bind)",
    )
    parser.add_argument("--crowd", type=int, default=300, help="handshakes at once")
    parser.add_argument("--stalled", type=int, default=200, help="handshakes left unfinished")
    parser.add_argument("--garbage", type=int, default=3000, help="random datagrams")
    parser.add_argument("--per-variant", type=int, default=3, help="handshakes per variant")
    parser.add_argument("--timeout", type=float, default=8.0, help="seconds per handshake")
    parser.add_argument(
        "--hold",
        type=float,
        default=12.0,
        help="seconds to wait for the node to close a handshake it confirmed",
    )
    parser.add_argument("--seed", type=int, default=75)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(attack(args)), sort_keys=True), flush=True)


if __name__ == "__main__":
    sys.exit(main())
