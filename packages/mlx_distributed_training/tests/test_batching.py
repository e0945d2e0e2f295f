import numpy as np
from mlx_distributed_training.training.datasets.batching import (
    BatchLayout,
    collate,
    epoch_order,
    global_batch,
    rank_micro_batches,
)
from mlx_distributed_training.training.datasets.encode import EncodedExample


def make_examples(lengths):
    return [
        EncodedExample(
            np.arange(1, n + 1, dtype=np.int32), np.ones(n, bool), f"line {i}"
        )
        for i, n in enumerate(lengths)
    ]


def test_epoch_order_is_seeded_and_differs_per_epoch():
    assert np.array_equal(epoch_order(10, 3, 0), epoch_order(10, 3, 0))
    assert not np.array_equal(epoch_order(10, 3, 0), epoch_order(10, 3, 1))


def test_ranks_share_global_batch_without_overlap():
    indices = np.arange(8)
    shares = [
        np.concatenate(rank_micro_batches(indices, BatchLayout(2, 2, 2, rank)))
        for rank in range(2)
    ]
    assert sorted(np.concatenate(shares).tolist()) == list(range(8))
    assert shares[0].tolist() == [0, 2, 4, 6]


def test_short_final_batch_gives_empty_micro_batches():
    layout = BatchLayout(2, 2, 2, rank=1)
    order = np.arange(10)
    last = global_batch(order, layout, 1)
    micro = rank_micro_batches(last, layout)
    assert [m.tolist() for m in micro] == [[9], []]
    assert layout.steps_per_epoch(10) == 2


def test_collate_pads_and_masks():
    batch = collate(make_examples([3, 9]), np.array([0, 1]))
    assert batch.inputs.shape == (2, 15)
    assert batch.target_count == 2 + 8
    assert batch.mask[0].tolist()[:3] == [1.0, 1.0, 0.0]


def test_collate_of_nothing_is_none():
    assert collate(make_examples([3]), np.array([], dtype=int)) is None
