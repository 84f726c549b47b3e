"""Which member of an ensemble belongs to which configuration: groups of members, each with its own head.

A run is one group (every member shares the run's head). A pack (bench.pack) is several: the members
of each configuration contiguous, with that configuration's head (output units, target encoding,
objective), so that one forward and backward per step trains them all. Members of equal output width
sit side by side (`Groups.of` orders them so), and each run of equal width is one output layer of the
model (`outputs`): a member's output product then has its own width, the kernel it takes alone (a
layer zero-padded to the widest width would give it other bits).

    groups = Groups.of([head_a, head_b], [35, 35])   # two configurations of 35 members each
    groups.widths()       # [K] each member's output units (what bench.models builds)
    groups.outputs        # [(start, stop)] the member spans of the model's output layers
    groups.locate(i)      # (output layer, rows in it) of group i's members
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    """One configuration's members: its head and their positions [start, stop) in the ensemble."""

    head: object  # bench.heads.Head
    start: int
    stop: int

    @property
    def members(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Groups:
    """The groups of an ensemble, in member order (contiguous, covering every member)."""

    groups: tuple

    @classmethod
    def single(cls, head, k: int) -> "Groups":
        """A run: K members sharing one head."""
        return cls((Group(head, 0, k),))

    @classmethod
    def of(cls, heads, sizes) -> "Groups":
        """Groups of `sizes[i]` members with `heads[i]`, in the order given: equal output widths must
        already be side by side (`order` sorts configurations so)."""
        groups, start = [], 0
        for head, size in zip(heads, sizes):
            groups.append(Group(head, start, start + size))
            start += size
        widths = [g.head.n_outputs for g in groups]
        runs = [w for i, w in enumerate(widths) if i == 0 or w != widths[i - 1]]
        if len(runs) != len(set(runs)):
            raise ValueError(f"groups of one output width must be side by side; got widths {widths}")
        return cls(tuple(groups))

    @staticmethod
    def order(heads) -> list:
        """The positions of `heads` in an order that puts equal output widths side by side (stable:
        the given order within one width, widths in order of first appearance)."""
        first = {}
        for i, head in enumerate(heads):
            first.setdefault(head.n_outputs, i)
        return sorted(range(len(heads)), key=lambda i: first[heads[i].n_outputs])

    def __iter__(self):
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i) -> Group:
        return self.groups[i]

    @property
    def k(self) -> int:
        return self.groups[-1].stop

    @property
    def head(self):
        """The head of a single group (a run's); a pack has several (`groups[i].head`)."""
        if len(self.groups) != 1:
            raise AttributeError("a pack of several configurations has one head per group")
        return self.groups[0].head

    def widths(self) -> list:
        """[K] each member's output units."""
        return [g.head.n_outputs for g in self.groups for _ in range(g.size)]

    @property
    def outputs(self) -> list:
        """[(start, stop)] member spans of equal output width, in order: one output layer each."""
        spans = []  # (start, stop, width)
        for g in self.groups:
            if spans and g.head.n_outputs == spans[-1][2]:
                spans[-1] = (spans[-1][0], g.stop, g.head.n_outputs)
            else:
                spans.append((g.start, g.stop, g.head.n_outputs))
        return [(start, stop) for start, stop, _ in spans]

    def locate(self, i: int) -> tuple:
        """(index of the output layer, slice of its rows) holding group i's members."""
        g = self.groups[i]
        for layer, (start, stop) in enumerate(self.outputs):
            if start <= g.start < stop:
                return layer, slice(g.start - start, g.stop - start)
        raise IndexError(i)
