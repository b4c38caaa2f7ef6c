"""Secure aggregation: the masked protocol of Bonawitz et al. (CCS 2017), with SecAgg+'s sparse neighbours.

The server learns the sum of the clients' vectors in the ring Z_M and nothing
else (against an honest-but-curious server: it follows the protocol, and
reads everything it is sent). Four rounds, as in the paper:

0. **Advertise keys.** Each client makes two X25519 key pairs — ``c`` to
   encrypt what it sends other clients through the server, ``s`` to agree on
   pairwise masks — and a 32-byte self-mask seed ``b``, all from the
   operating system's CSPRNG (``secrets``), and sends the server its two
   public keys; the server forwards them to the client's neighbours.
1. **Share keys.** Each client splits ``b`` and its ``s`` private key into
   Shamir shares (``threshold`` of them recover a secret; fewer reveal
   nothing) over GF(2^521 − 1), one share of each for each neighbour,
   encrypted with AES-GCM under a key derived (HKDF-SHA256) from the
   ``c``-agreement with that neighbour; the server forwards the ciphertexts.
2. **Masked input.** Client ``u`` sends ``y_u = x_u + PRG(b_u) + Σ_{v>u}
   PRG(s_uv) − Σ_{v<u} PRG(s_uv)`` (mod M) over its neighbours ``v`` that
   shared keys, where ``s_uv`` is derived (HKDF-SHA256) from the
   ``s``-agreement of ``u`` and ``v`` and the PRG is ChaCha20's keystream,
   reduced to uniform elements of Z_M.
3. **Unmask.** The server names who sent a masked input and who dropped
   after sharing keys. Each remaining client sends its share of ``b_u`` for
   every neighbour ``u`` that sent an input, and its share of ``s_u`` for
   every neighbour ``u`` that dropped — never both for one client (it refuses:
   the two together would unmask ``u``'s input). The server reconstructs
   them, removes the self masks of the inputs it got and the pairwise masks
   the dropped clients left in them, and has ``Σ x_u`` over the clients that
   sent an input.

With ``neighbours=k`` (SecAgg+, Bell et al. CCS 2020) a client masks with and
shares to only ``k`` others — a random ring of neighbours (a Harary graph on a
random order of the clients) — instead of all, so its work grows with k, not
with the number of clients; the threshold then counts a client's neighbours.
If at any step fewer than ``threshold`` clients remain (or can help to
recover a client's secrets), the sum fails with a :class:`~fedc.FedcError`.

Only the protocol is written here; the cryptography is the ``cryptography``
package's. This module is the protocol alone: :func:`secure_sum` runs it for
simulated clients in one process; :class:`Server` sees only what a server
would be sent (kept in :attr:`Server.received`, which tests read).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from fedc.errors import FedcError

__all__ = ["MAX_RING_BITS", "Advertise", "Client", "MaskedInput", "Server", "Unmasking", "harary_neighbours",
           "prg_elements", "ring_modulus", "secure_sum", "shamir_recover", "shamir_split"]

#: The largest ring the protocol sums in: 2^62 (so that a sum of two elements fits an unsigned 64-bit integer).
MAX_RING_BITS = 62

#: Shamir's field: GF(P) for the Mersenne prime 2^521 − 1, wider than any 32-byte secret.
PRIME = 2**521 - 1
_SHARE_BYTES = 66

_INFO_SHARES = b"fedc secagg: encrypting shares"
_INFO_MASK = b"fedc secagg: pairwise mask seed"


def ring_modulus(bound: int, clients: int) -> int:
    """The power-of-two modulus in which ``clients`` values in ``[0, bound)`` sum without wrapping around."""
    if bound < 1 or clients < 1:
        raise FedcError(f"secure aggregation sums values in [0, {bound}) over {clients} clients: nothing to sum")
    bits = ((bound - 1) * clients).bit_length()
    if bits > MAX_RING_BITS:
        raise FedcError(f"secure aggregation: {clients} values in [0, {bound}) need a ring of {bits} bits; at most "
                        f"{MAX_RING_BITS} are supported")
    return 1 << max(bits, 1)


# --------------------------------------------------------------------------
# The primitives: key agreement, derivation, encryption, the PRG, Shamir's shares


def _x25519():
    from cryptography.hazmat.primitives.asymmetric import x25519

    return x25519


def _derive(shared: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _public_bytes(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _private_bytes(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def _agree(private_raw: bytes, public_raw: bytes, info: bytes) -> bytes:
    x25519 = _x25519()
    private = x25519.X25519PrivateKey.from_private_bytes(private_raw)
    return _derive(private.exchange(x25519.X25519PublicKey.from_public_bytes(public_raw)), info)


def prg_elements(seed: bytes, count: int, modulus: int) -> np.ndarray:
    """``count`` uniform elements of Z_modulus (uint64) expanded from a 32-byte ``seed`` by ChaCha20's keystream.

    A power-of-two modulus takes the keystream's low bits; another rejects the
    64-bit words past the largest multiple of it (no bias), continuing the same
    keystream, so both ends of a pairwise mask expand the same elements.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    stream = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    if modulus & (modulus - 1) == 0:
        words = np.frombuffer(stream.update(bytes(8 * count)), dtype="<u8")
        return words & np.uint64(modulus - 1)
    limit = (2**64 // modulus) * modulus
    kept: list[np.ndarray] = []
    have = 0
    while have < count:
        want = count - have
        words = np.frombuffer(stream.update(bytes(8 * (want + want // 8 + 16))), dtype="<u8")
        words = words[words < np.uint64(limit)] if limit < 2**64 else words
        kept.append(words[:want] % np.uint64(modulus))
        have += len(kept[-1])
    return np.concatenate(kept) if kept else np.zeros(0, np.uint64)


def shamir_split(secret: int, holders: Iterable[int], threshold: int) -> dict[int, int]:
    """Shares of ``secret`` (< 2^521 − 1) for each holder ``x`` (≥ 1): any ``threshold`` of them recover it."""
    coefficients = [secret] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = {}
    for x in holders:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = y
    return shares


def shamir_recover(shares: dict[int, int]) -> int:
    """The secret of ``shares`` ``{x: y}`` (Lagrange interpolation at 0; the caller gives at least the threshold)."""
    secret = 0
    for xi, yi in shares.items():
        numerator, denominator = 1, 1
        for xj in shares:
            if xj != xi:
                numerator = numerator * (-xj) % PRIME
                denominator = denominator * (xi - xj) % PRIME
        secret = (secret + yi * numerator * pow(denominator, -1, PRIME)) % PRIME
    return secret


def harary_neighbours(count: int, k: int, order: list[int]) -> dict[int, set[int]]:
    """Each client's ``k`` neighbours (``k`` even, < count): those within ``k/2`` places of it on the ring of
    clients in ``order`` (a random order, so that neighbourhoods are not chosen by index)."""
    place = {client: i for i, client in enumerate(order)}
    half = k // 2
    return {c: {order[(place[c] + d) % count] for d in range(-half, half + 1) if d} for c in range(count)}


# --------------------------------------------------------------------------
# Messages: what a client sends the server


@dataclass(frozen=True)
class Advertise:
    """Round 0: a client's two public keys (32 bytes each)."""

    client: int
    c_public: bytes
    s_public: bytes


@dataclass(frozen=True)
class MaskedInput:
    """Round 2: a client's masked vector (elements of Z_M, uint64)."""

    client: int
    y: np.ndarray


@dataclass(frozen=True)
class Unmasking:
    """Round 3: a client's shares of the self-mask seeds of clients that sent an input (``b``) and of the mask
    keys of clients that dropped (``s``), each ``{client: share}``."""

    client: int
    b: dict
    s: dict


# --------------------------------------------------------------------------
# The parties


class Client:
    """One client of the protocol (its secrets never leave it, except as shares and masked values)."""

    def __init__(self, index: int, neighbours: set[int], threshold: int, modulus: int):
        x25519 = _x25519()
        self.index = index
        self.neighbours = set(neighbours)
        self.threshold = threshold
        self.modulus = modulus
        self._c = x25519.X25519PrivateKey.generate()
        self._s = x25519.X25519PrivateKey.generate()
        self._b = secrets.token_bytes(32)
        self._keys: dict[int, Advertise] = {}
        self._held: dict[int, tuple[int, int]] = {}  # from client u: (my share of b_u, my share of s_u)
        self._revealed: dict[int, str] = {}  # client -> which of its secrets this client gave the server

    def advertise(self) -> Advertise:
        return Advertise(self.index, _public_bytes(self._c.public_key()), _public_bytes(self._s.public_key()))

    def share_keys(self, keys: dict[int, Advertise]) -> dict[int, bytes]:
        """Round 1: ``{neighbour: ciphertext}`` of this client's shares for each neighbour that advertised keys
        (and its own share of its secrets, which it keeps)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._keys = {v: keys[v] for v in self.neighbours if v in keys}
        holders = sorted(set(self._keys) | {self.index})
        b_shares = shamir_split(int.from_bytes(self._b, "big"), [h + 1 for h in holders], self.threshold)
        s_shares = shamir_split(int.from_bytes(_private_bytes(self._s), "big"), [h + 1 for h in holders],
                                self.threshold)
        self._held[self.index] = (b_shares[self.index + 1], s_shares[self.index + 1])
        out = {}
        for v in holders:
            if v == self.index:
                continue
            key = _agree(_private_bytes(self._c), self._keys[v].c_public, _INFO_SHARES)
            nonce = secrets.token_bytes(12)
            plain = b_shares[v + 1].to_bytes(_SHARE_BYTES, "big") + s_shares[v + 1].to_bytes(_SHARE_BYTES, "big")
            out[v] = nonce + AESGCM(key).encrypt(nonce, plain, f"{self.index}->{v}".encode())
        return out

    def masked_input(self, value: np.ndarray, ciphertexts: dict[int, bytes]) -> MaskedInput:
        """Round 2: ``value`` (integers in [0, M)) masked, having decrypted the shares other clients sent it."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        for u, blob in ciphertexts.items():
            if u not in self._keys:
                continue
            key = _agree(_private_bytes(self._c), self._keys[u].c_public, _INFO_SHARES)
            try:
                plain = AESGCM(key).decrypt(blob[:12], blob[12:], f"{u}->{self.index}".encode())
            except InvalidTag:
                raise FedcError(f"secure aggregation: client {self.index} received shares from client {u} that do "
                                "not decrypt (altered on the way)") from None
            self._held[u] = (int.from_bytes(plain[:_SHARE_BYTES], "big"), int.from_bytes(plain[_SHARE_BYTES:], "big"))
        flat = np.asarray(value).astype(np.uint64).ravel()
        m = np.uint64(self.modulus)
        y = (flat % m + prg_elements(self._b, flat.size, self.modulus)) % m
        for v in sorted(self._keys):  # the neighbours that shared keys
            seed = _agree(_private_bytes(self._s), self._keys[v].s_public, _INFO_MASK)
            mask = prg_elements(seed, flat.size, self.modulus)
            y = (y + mask) % m if v > self.index else (y + m - mask) % m
        return MaskedInput(self.index, y)

    def unmask(self, sent_input: set[int], dropped: set[int]) -> Unmasking:
        """Round 3: shares of ``b_u`` for the neighbours ``u`` in ``sent_input``, of ``s_u`` for those in
        ``dropped`` — refusing to give both secrets of one client, ever (that would reveal its input)."""
        both = sent_input & dropped
        if both:
            raise FedcError(f"secure aggregation: the server named client(s) {sorted(both)} both as having sent "
                            f"an input and as dropped; client {self.index} refuses to reveal both of their secrets")
        b, s = {}, {}
        for u, (b_share, s_share) in self._held.items():
            if u in sent_input:
                kind, share, into = "b", b_share, b
            elif u in dropped:
                kind, share, into = "s", s_share, s
            else:
                continue
            if self._revealed.setdefault(u, kind) != kind:
                raise FedcError(f"secure aggregation: client {self.index} already revealed client {u}'s other "
                                "secret; it refuses to reveal both")
            into[u] = share
        return Unmasking(self.index, b, s)


@dataclass
class Server:
    """The server's side: it relays, and sums. ``received`` keeps every message it was sent, in order."""

    count: int
    threshold: int
    modulus: int
    neighbours: dict
    received: list = field(default_factory=list)
    #: the clients' advertised keys (round 0), which the server relays
    keys: dict = field(default_factory=dict)

    def _need(self, alive: set, stage: str) -> None:
        if len(alive) < self.threshold:
            raise FedcError(f"secure aggregation failed: {len(alive)} of the {self.count} clients remain {stage}, "
                            f"fewer than the threshold {self.threshold}; the sum cannot be unmasked")

    def unmask(self, inputs: dict[int, MaskedInput], shared: set[int], replies: list[Unmasking],
               length: int) -> np.ndarray:
        """The sum of the clients' inputs (``inputs``) from the replies of round 3 (``shared``: who shared keys)."""
        m = np.uint64(self.modulus)
        total = np.zeros(length, np.uint64)
        for message in inputs.values():
            total = (total + message.y) % m
        dropped = shared - set(inputs)
        for u in inputs:  # each input's self mask
            shares = {r.client + 1: r.b[u] for r in replies if u in r.b}
            if len(shares) < self.threshold:
                raise FedcError(f"secure aggregation failed: client {u}'s self mask could be recovered from only "
                                f"{_shares(len(shares))}; {self.threshold} are needed")
            seed = shamir_recover(shares).to_bytes(32, "big")
            total = (total + m - prg_elements(seed, length, self.modulus)) % m
        for u in dropped:  # the pairwise masks a dropped client left in its neighbours' inputs
            shares = {r.client + 1: r.s[u] for r in replies if u in r.s}
            if len(shares) < self.threshold:
                raise FedcError(f"secure aggregation failed: dropped client {u}'s mask key could be recovered from "
                                f"only {_shares(len(shares))}; {self.threshold} are needed")
            private = shamir_recover(shares).to_bytes(32, "big")
            for v in self.neighbours[u] & set(inputs):
                seed = _agree(private, self.keys[v].s_public, _INFO_MASK)
                mask = prg_elements(seed, length, self.modulus)
                # v added +mask if u > v, else −mask: take it away
                total = (total + m - mask) % m if u > v else (total + mask) % m
        return total


def _shares(n: int) -> str:
    return f"{n} share" if n == 1 else f"{n} shares"


def secure_sum(values: list, modulus: int, threshold: Optional[int] = None, neighbours: Optional[int] = None,
               drop_after_keys: Iterable[int] = (), drop_after_input: Iterable[int] = (),
               drop_before_keys: Iterable[int] = ()) -> tuple[np.ndarray, Server]:
    """The sum modulo ``modulus`` of the integer arrays ``values`` (one per client, each in ``[0, modulus)``, of
    one shape) over the clients that sent a masked input, by the protocol, and the :class:`Server` (what it saw).

    ``threshold`` defaults to a majority of the clients (of a client's neighbours and itself with
    ``neighbours=k``). The ``drop_*`` clients stop taking part: before advertising keys, after sharing them
    (before sending an input), or after sending their input (before unmasking).
    """
    count = len(values)
    if count == 0:
        raise FedcError("secure aggregation of no clients: there is nothing to sum")
    if not 2 <= modulus <= 2**MAX_RING_BITS:
        raise FedcError(f"secure aggregation: the modulus is in [2, 2**{MAX_RING_BITS}], not {modulus}")
    shape = np.shape(values[0])
    arrays = []
    for i, v in enumerate(values):
        a = np.asarray(v)
        if a.shape != shape or a.dtype.kind not in "iu":
            raise FedcError(f"secure aggregation: client {i}'s value is {a.dtype.name}{list(a.shape)}, the first "
                            f"client's {np.asarray(values[0]).dtype.name}{list(shape)}: all are integers of one shape")
        if a.size and (a.min() < 0 or int(a.max()) >= modulus):
            raise FedcError(f"secure aggregation: client {i}'s value has an element outside [0, {modulus})")
        arrays.append(a)
    if neighbours is None:
        graph = {c: set(range(count)) - {c} for c in range(count)}
        group = count
    else:
        if not isinstance(neighbours, int) or neighbours < 2 or neighbours % 2 or neighbours >= count:
            raise FedcError(f"secure aggregation: neighbours= is an even number in [2, {count - 1}] (each client "
                            f"masks with that many others), not {neighbours!r}")
        order = list(range(count))
        secrets.SystemRandom().shuffle(order)
        graph = harary_neighbours(count, neighbours, order)
        group = neighbours + 1
    threshold = group // 2 + 1 if threshold is None else threshold
    if not isinstance(threshold, int) or not 1 <= threshold <= group:
        raise FedcError(f"secure aggregation: threshold= is a number of clients in [1, {group}], not {threshold!r}")
    server = Server(count, threshold, modulus, graph)
    clients = {c: Client(c, graph[c], threshold, modulus) for c in range(count)}
    alive = set(clients) - set(drop_before_keys)
    server._need(alive, "to advertise keys")
    adverts = {c: clients[c].advertise() for c in sorted(alive)}
    server.received.extend(adverts.values())
    server.keys = adverts
    ciphertexts = {c: clients[c].share_keys({v: adverts[v] for v in graph[c] if v in adverts}) for c in sorted(alive)}
    server.received.extend(("shares", c, dict(blobs)) for c, blobs in ciphertexts.items())
    shared = set(alive)
    alive -= set(drop_after_keys)
    server._need(alive, "to send a masked input")
    inputs = {}
    for c in sorted(alive):
        to_me = {u: blobs[c] for u, blobs in ciphertexts.items() if c in blobs}
        inputs[c] = clients[c].masked_input(arrays[c], to_me)
        server.received.append(inputs[c])
    alive -= set(drop_after_input)
    server._need(alive, "to unmask")
    sent, dropped = set(inputs), shared - set(inputs)
    replies = [clients[c].unmask(sent & (graph[c] | {c}), dropped & graph[c]) for c in sorted(alive)]
    server.received.extend(replies)
    total = server.unmask(inputs, shared, replies, int(np.prod(shape, dtype=np.int64)))
    return total.reshape(shape), server
