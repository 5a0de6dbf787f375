"""Re-use groups: the pairs a screen confirms, joined into connected components.

A reader thinks "A, B and C are one panel", not three pairs. Every pair the screen calls a re-use
(`PairRecord.same`: combined > `scoring.REUSE_SCORE`) links its two panels; the connected
components of these links (union-find) are the groups. A group has

* members: its panels, the reference first, then in order of their first confirmed pair;
* reference: the member with the most confirmed links (ties: the one in the better-ranked pair,
  A before B): the panel the others are shown aligned to;
* pairs: its confirmed pairs, best first; best: the highest combined score among them.

Groups are numbered 1, 2, ... by best score (ties: the rank of their best pair), which is the
order of the report's cards and the `group` column of pairs.csv (empty for unconfirmed pairs).
A member is aligned to the reference with the verifier's transform of their own pair (confirmed
or only a candidate); a member never verified against the reference is shown as it is.
"""

from __future__ import annotations

import dataclasses
from typing import Hashable, Iterable


def connected_components(edges: Iterable[tuple[Hashable, Hashable]], nodes: Iterable[Hashable] = ()) -> list[list]:
    """The connected components of an undirected graph: union-find over (u, v) edges of hashable
    nodes, plus isolated `nodes`. Each component lists its nodes in order of first appearance
    (`nodes` first, then the edges), the components in order of their first node."""
    parent: dict = {}
    order = []

    def find(node):
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    def add(node):
        if node not in parent:
            parent[node] = node
            order.append(node)

    for node in nodes:
        add(node)
    for u, v in edges:
        add(u)
        add(v)
        root_u, root_v = find(u), find(v)
        if root_u != root_v:
            parent[root_v] = root_u
    components: dict = {}
    for node in order:
        components.setdefault(find(node), []).append(node)
    return list(components.values())


@dataclasses.dataclass
class Group:
    """Panels that are re-uses of one another (see the module docstring).

    Attributes:
        number: 1 = the group with the best combined score.
        members: its Panels, the reference first.
        pairs: its confirmed PairRecords, best first.
        to_reference: id(member) -> the best-ranked PairRecord (confirmed or not) between that
            member and the reference, for the members that have one.
    """

    number: int
    members: list
    pairs: list
    to_reference: dict = dataclasses.field(default_factory=dict)

    @property
    def reference(self):
        return self.members[0]

    @property
    def best(self) -> float:
        return self.pairs[0].combined

    def links(self, panel) -> int:
        """How many confirmed pairs of the group `panel` is in."""
        return sum(panel is r.a or panel is r.b for r in self.pairs)


def find_groups(records) -> list[Group]:
    """The re-use groups of ranked PairRecords (best first, as a `ScreenResult` holds them)."""
    records = list(records)
    confirmed = [r for r in records if r.same]
    panel_of = {}
    for record in confirmed:
        panel_of.setdefault(id(record.a), record.a)
        panel_of.setdefault(id(record.b), record.b)
    components = connected_components((id(r.a), id(r.b)) for r in confirmed)
    component_of = {node: number for number, component in enumerate(components) for node in component}
    pairs_of = [[] for _ in components]
    for record in confirmed:
        pairs_of[component_of[id(record.a)]].append(record)
    groups = []
    for component, pairs in zip(components, pairs_of):
        links = {node: 0 for node in component}
        for record in pairs:
            links[id(record.a)] += 1
            links[id(record.b)] += 1
        # `component` is in order of first appearance in the ranked pairs: a stable sort by links
        # puts the most linked first, ties by rank.
        members = sorted(component, key=lambda node: -links[node])
        groups.append(Group(0, [panel_of[node] for node in members], pairs))
    order = {id(record): position for position, record in enumerate(records)}
    groups.sort(key=lambda g: (-g.best, order[id(g.pairs[0])]))
    members_of = {}
    for number, group in enumerate(groups, start=1):
        group.number = number
        members_of.update({id(p): group for p in group.members})
    for record in records:  # best first: the first pair found with the reference is its best
        group = members_of.get(id(record.a))
        if group is None or members_of.get(id(record.b)) is not group:
            continue
        for member, other in ((record.a, record.b), (record.b, record.a)):
            if other is group.reference and member is not group.reference:
                group.to_reference.setdefault(id(member), record)
    return groups


def group_numbers(groups) -> dict:
    """id(PairRecord) -> its group's number, for the confirmed pairs."""
    return {id(record): group.number for group in groups for record in group.pairs}


def align_to_reference(group: Group, member):
    """`member` warped into the reference's frame with the verifier's transform of their pair.

    Returns (warped [H, W] float32, shared [H, W] bool, the PairRecord used), or (None, None,
    record or None) when the pair has no transform, there is no such pair, or a panel has no
    pixels (an identical PDF file).
    """
    from keras_forensics.screening.verify import align

    reference = group.reference
    record = group.to_reference.get(id(member))
    verification = getattr(record, "verification", None)
    if (verification is None or verification.matrix is None or member.image is None
            or reference.image is None):
        return None, None, record
    # The verifier's matrix maps record.a to record.b.
    if record.a is reference:
        warped, shared = align(reference.image, member.image, verification)
    else:
        warped, shared = align(member.image, reference.image, verification, reverse=True)
    return warped, shared, record
