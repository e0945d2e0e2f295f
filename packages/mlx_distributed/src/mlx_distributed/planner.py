"""Split a model's layers into contiguous shards, one per node."""


class PlanError(ValueError):
    """A split that cannot give every node at least one layer."""


def split_even(num_layers: int, num_nodes: int) -> list[tuple[int, int]]:
    """Split layers as evenly as possible; earlier nodes take the remainder."""
    return split_by_weight(num_layers, [1.0] * num_nodes)


def split_by_weight(num_layers: int, weights: list[float]) -> list[tuple[int, int]]:
    """Split layers in proportion to `weights` (e.g. node memory).

    Every node gets at least one layer; leftover layers from rounding go to
    the nodes whose exact share lost the most.
    """
    num_nodes = len(weights)
    if num_nodes == 0:
        raise PlanError("cannot plan shards for zero nodes")
    if num_layers < num_nodes:
        raise PlanError(
            f"model has {num_layers} layers, fewer than the {num_nodes} nodes; "
            "every node needs at least one layer"
        )
    if any(weight < 0 for weight in weights):
        raise PlanError(f"weights must be >= 0, found {weights}")
    total = sum(weights)
    if total == 0:
        weights, total = [1.0] * num_nodes, float(num_nodes)

    spare = num_layers - num_nodes
    exact = [spare * weight / total for weight in weights]
    counts = [1 + int(share) for share in exact]
    remainder = num_layers - sum(counts)
    by_loss = sorted(
        range(num_nodes), key=lambda index: (-(exact[index] - int(exact[index])), index)
    )
    for index in by_loss[:remainder]:
        counts[index] += 1

    ranges = []
    start = 0
    for count in counts:
        ranges.append((start, start + count))
        start += count
    return ranges


def check_explicit(num_layers: int, ranges: list[tuple[int, int]]) -> None:
    """Raise PlanError unless the ranges tile [0, num_layers) in order."""
    expected_start = 0
    for index, (start, end) in enumerate(ranges):
        if start != expected_start or end <= start:
            raise PlanError(
                f"nodes[{index}].layers [{start}, {end}) does not continue from "
                f"layer {expected_start}"
            )
        expected_start = end
    if expected_start != num_layers:
        raise PlanError(
            f"explicit layer ranges end at {expected_start}, but the model has "
            f"{num_layers} layers"
        )
