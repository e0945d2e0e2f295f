import pytest
from mlx_distributed.planner import (
    PlanError,
    check_explicit,
    split_by_weight,
    split_even,
)


def test_even_split_gives_remainder_to_first_nodes():
    assert split_even(30, 4) == [(0, 8), (8, 16), (16, 23), (23, 30)]


def test_even_split_covers_all_layers_for_many_sizes():
    for layers in range(3, 40):
        for nodes in range(1, 4):
            ranges = split_even(layers, nodes)
            assert ranges[0][0] == 0
            assert ranges[-1][1] == layers
            assert all(end > start for start, end in ranges)
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_memory_split_is_proportional():
    assert split_by_weight(30, [16e9, 8e9]) == [(0, 20), (20, 30)]


def test_memory_split_gives_every_node_a_layer():
    assert split_by_weight(4, [1000.0, 1.0, 1.0]) == [(0, 2), (2, 3), (3, 4)]


def test_more_nodes_than_layers_is_rejected():
    with pytest.raises(PlanError) as error:
        split_even(2, 3)
    assert str(error.value) == (
        "model has 2 layers, fewer than the 3 nodes; every node needs at least "
        "one layer"
    )


def test_explicit_ranges_must_reach_last_layer():
    with pytest.raises(PlanError) as error:
        check_explicit(30, [(0, 10), (10, 20)])
    assert str(error.value) == (
        "explicit layer ranges end at 20, but the model has 30 layers"
    )


def test_explicit_ranges_must_be_contiguous():
    with pytest.raises(PlanError, match=r"nodes\[1\].layers \[12, 30\)"):
        check_explicit(30, [(0, 10), (12, 30)])
