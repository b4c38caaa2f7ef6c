"""The secure-aggregation protocol (backends/tf/secagg.py): exact sums, dropouts, what the server sees."""

import numpy as np
import pytest

import fedc
from fedc.backends.tf import secagg
from fedc.backends.tf.secagg import ring_modulus, secure_sum

rng = np.random.default_rng(1234)


def values(count, bound, shape=(50,)):
    return [rng.integers(0, bound, size=shape) for _ in range(count)]


def plain(vals, modulus, without=()):
    return np.sum([v for i, v in enumerate(vals) if i not in set(without)], axis=0) % modulus


@pytest.mark.parametrize("neighbours", [None, 4])
@pytest.mark.parametrize("bound,shape", [(2, (7,)), (256, (3, 4)), (2**20, (100,)), (2**40, ())])
def test_the_sum_is_the_plaintext_sum_exactly(bound, shape, neighbours):
    vals = values(9, bound, shape)
    modulus = ring_modulus(bound, 9)
    total, _ = secure_sum(vals, modulus, neighbours=neighbours)
    assert total.shape == np.shape(vals[0])
    np.testing.assert_array_equal(total.astype(np.int64), np.sum(vals, axis=0))


@pytest.mark.parametrize("modulus", [7, 1000, 2**31 - 1])
def test_a_modular_sum_is_reduced_modulo_the_modulus(modulus):
    vals = values(6, modulus)
    total, _ = secure_sum(vals, modulus, drop_after_keys=[2])
    np.testing.assert_array_equal(total, plain(vals, modulus, without=[2]))


@pytest.mark.parametrize("neighbours", [None, 6])
def test_clients_dropping_below_the_threshold_leave_the_survivors_sum_exact(neighbours):
    vals = values(12, 2**16)
    modulus = ring_modulus(2**16, 12)
    # dropped after sharing keys (their pairwise masks are unmasked from shares of their keys), and after sending
    # an input (their input counts; their self masks are recovered from the others' shares)
    total, _ = secure_sum(vals, modulus, neighbours=neighbours, drop_before_keys=[0], drop_after_keys=[4, 9],
                          drop_after_input=[7])
    np.testing.assert_array_equal(total, plain(vals, modulus, without=[0, 4, 9]))


@pytest.mark.parametrize("stage,message", [
    ("drop_before_keys", "5 of the 10 clients remain to advertise keys, fewer than the threshold 6"),
    ("drop_after_keys", "5 of the 10 clients remain to send a masked input, fewer than the threshold 6"),
    ("drop_after_input", "5 of the 10 clients remain to unmask, fewer than the threshold 6"),
])
def test_too_many_dropouts_fail_the_sum_clearly(stage, message):
    vals = values(10, 100)
    with pytest.raises(fedc.FedcError, match="secure aggregation failed: " + message):
        secure_sum(vals, ring_modulus(100, 10), **{stage: range(5)})
    total, _ = secure_sum(vals, ring_modulus(100, 10), **{stage: range(4)})  # one fewer: the threshold is met
    expected = plain(vals, ring_modulus(100, 10), without=range(4) if stage != "drop_after_input" else ())
    np.testing.assert_array_equal(total, expected)


def test_with_sparse_neighbours_a_dropped_client_whose_neighbours_dropped_too_fails_clearly():
    vals = values(10, 100)
    with pytest.raises(fedc.FedcError, match=r"could be recovered from only \d shares?; 2 are needed"):
        secure_sum(vals, ring_modulus(100, 10), neighbours=2, drop_after_keys=range(0, 10, 2))


def test_the_servers_view_of_one_masked_input_is_uniform():
    from scipy import stats

    modulus, length = 256, 51200
    zeros = [np.zeros(length, np.int64) for _ in range(5)]  # unmasked, every element would be 0
    _, server = secure_sum(zeros, modulus)
    masked = [m for m in server.received if isinstance(m, secagg.MaskedInput)]
    assert len(masked) == 5
    counts = np.bincount(masked[2].y.astype(np.int64), minlength=modulus)
    assert stats.chisquare(counts).pvalue > 1e-6  # 200 per value expected; an unmasked input puts all in one
    # and two clients' masked inputs are not related (pairwise masks cancel only in the sum)
    joint = np.bincount((masked[0].y.astype(np.int64) % 16) * 16 + masked[1].y.astype(np.int64) % 16, minlength=256)
    assert stats.chisquare(joint).pvalue > 1e-6


def test_no_client_value_reaches_the_server_unmasked():
    vals = [rng.integers(1, 2**20, size=64) for _ in range(6)]
    modulus = ring_modulus(2**20, 6)
    total, server = secure_sum(vals, modulus, drop_after_keys=[1], drop_after_input=[3])
    arrays, blobs = [], []
    for message in server.received:  # everything the server was sent, of every round
        if isinstance(message, secagg.MaskedInput):
            arrays.append(message.y)
        elif isinstance(message, secagg.Advertise):
            blobs += [message.c_public, message.s_public]
        elif isinstance(message, secagg.Unmasking):
            assert not set(message.b) & set(message.s)  # never both secrets of one client
            blobs += [share.to_bytes(66, "big") for share in (*message.b.values(), *message.s.values())]
        else:
            _, _, ciphertexts = message
            blobs += list(ciphertexts.values())
    assert len(arrays) == 5
    for i, v in enumerate(vals):
        for seen in arrays:
            assert np.mean(seen.astype(np.int64) == v) < 0.01  # about 1/modulus of the elements match by chance
        raw = v.astype("<u8").tobytes()
        assert not any(raw[:16] in blob for blob in blobs)
    np.testing.assert_array_equal(total, plain(vals, modulus, without=[1]))


def test_a_client_never_reveals_both_secrets_of_another():
    client = secagg.Client(0, {1}, threshold=2, modulus=256)
    other = secagg.Client(1, {0}, threshold=2, modulus=256)
    keys = {0: client.advertise(), 1: other.advertise()}
    to_client = other.share_keys(keys)
    client.share_keys(keys)
    client.masked_input(np.zeros(3, np.int64), {1: to_client[0]})
    with pytest.raises(fedc.FedcError, match="named client\\(s\\) \\[1\\] both as having sent an input and as dropped"):
        client.unmask({1}, {1})
    assert set(client.unmask({1}, set()).b) == {1}
    with pytest.raises(fedc.FedcError, match="already revealed client 1's other secret"):
        client.unmask(set(), {1})


def test_altered_shares_are_refused():
    a, b = secagg.Client(0, {1}, 2, 256), secagg.Client(1, {0}, 2, 256)
    keys = {0: a.advertise(), 1: b.advertise()}
    a.share_keys(keys)
    blob = bytearray(b.share_keys(keys)[0])
    blob[-1] ^= 1
    with pytest.raises(fedc.FedcError, match="client 0 received shares from client 1 that do not decrypt"):
        a.masked_input(np.zeros(2, np.int64), {1: bytes(blob)})


def test_shamir_shares_recover_with_the_threshold_and_the_prg_is_keyed():
    secret = int.from_bytes(b"\x07" * 32, "big")
    shares = secagg.shamir_split(secret, range(1, 8), threshold=4)
    assert secagg.shamir_recover({x: shares[x] for x in (2, 3, 5, 7)}) == secret
    assert secagg.shamir_recover({x: shares[x] for x in (1, 2, 3)}) != secret  # below the threshold: not it
    seed = b"\x01" * 32
    np.testing.assert_array_equal(secagg.prg_elements(seed, 1000, 1000), secagg.prg_elements(seed, 1000, 1000))
    assert not np.array_equal(secagg.prg_elements(seed, 1000, 1000), secagg.prg_elements(b"\x02" * 32, 1000, 1000))
    drawn = secagg.prg_elements(seed, 100000, 1000)
    assert drawn.max() < 1000 and len(np.unique(drawn)) == 1000


@pytest.mark.parametrize("call,message", [
    (lambda: secure_sum([], 256), "of no clients"),
    (lambda: secure_sum([np.zeros(3, np.int64), np.zeros(4, np.int64)], 256), "client 1's value is int64\\[4\\]"),
    (lambda: secure_sum([np.full(3, 300)], 256), "client 0's value has an element outside \\[0, 256\\)"),
    (lambda: secure_sum([np.zeros(2, np.float32)], 256), "client 0's value is float32"),
    (lambda: secure_sum(values(5, 10), 2**63), "the modulus is in \\[2, 2\\*\\*62\\]"),
    (lambda: secure_sum(values(5, 10), 16, neighbours=3), "neighbours= is an even number in \\[2, 4\\]"),
    (lambda: secure_sum(values(5, 10), 16, threshold=6), "threshold= is a number of clients in \\[1, 5\\]"),
    (lambda: ring_modulus(2**40, 2**30), "need a ring of 70 bits; at most 62"),
])
def test_bad_inputs_are_fedc_errors(call, message):
    with pytest.raises(fedc.FedcError, match=message):
        call()
