"""A sequential baseline: SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation",
ICDM 2018), trained with full cross-entropy over the catalog, which beats its original sampled
loss by a wide margin (Klenitskiy & Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really
better than SASRec?", RecSys 2023).

Written here in plain torch (about a hundred lines) rather than taken from RecBole: RecBole's
trainer brings its own data split, candidate set and seen-item filter, and this comparison must
use exactly the service's. Tuned on the validation part like every other baseline: the settings
in ``GRID`` and the number of epochs (the best validation NDCG@10, checked every
``CHECK_EVERY`` epochs), then refitted on the final training part for that many epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.core.records import Event
from service.evaluation.protocol import Interactions, Ranker, Split, per_user

# (longest history read, hidden size, dropout): a small grid, as the other baselines get.
GRID = ((50, 64, 0.2), (200, 64, 0.2), (200, 64, 0.5))
MAX_EPOCHS = 60
CHECK_EVERY = 5
BATCH = 64
LEARNING_RATE = 1e-3
HEADS = 2
BLOCKS = 2
SEED = 0


@dataclass(frozen=True)
class Setting:
    length: int
    hidden: int
    dropout: float
    epochs: int = MAX_EPOCHS


def _model(items: int, setting: Setting):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class SASRec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Row 0 is padding; item i is row i + 1.
            self.items = nn.Embedding(items + 1, setting.hidden, padding_idx=0)
            self.positions = nn.Embedding(setting.length, setting.hidden)
            layer = nn.TransformerEncoderLayer(
                setting.hidden,
                HEADS,
                setting.hidden * 4,
                setting.dropout,
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, BLOCKS, enable_nested_tensor=False)
            self.dropout = nn.Dropout(setting.dropout)
            self.norm = nn.LayerNorm(setting.hidden)

        def forward(self, sequences: torch.Tensor) -> torch.Tensor:
            length = sequences.shape[1]
            positions = torch.arange(length, device=sequences.device)
            hidden = self.dropout(self.items(sequences) + self.positions(positions))
            # No key-padding mask: a left-padded row's first positions would attend to nothing
            # and turn to NaN. Padding embeds as zeros (plus its position) and is masked out
            # of the loss, so the model learns to look past it.
            causal = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
            hidden = self.encoder(hidden, mask=causal)
            return self.norm(hidden)

        def logits(self, hidden: torch.Tensor) -> torch.Tensor:
            return hidden @ self.items.weight[1:].T  # over the catalog, shared embeddings

    return SASRec()


def _sequences(
    train: dict[str, list[Event]], data: Interactions, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training rows: each user's history cut from its end into pieces of ``length`` + 1
    items (1-based ids, left-padded with 0), so a long history trains on all of itself; and
    per user (in ``data.users`` order) the last ``length`` items, what a ranking reads."""
    pieces, last = [], np.zeros((len(data.users), length), dtype=np.int64)
    for row, user in enumerate(data.users):
        ids = [data.item_index[e.item_id] + 1 for e in train[user] if e.item_id in data.item_index]
        if ids:
            recent = ids[-length:]
            last[row, -len(recent) :] = recent
        for end in range(len(ids), 1, -length):
            piece = ids[max(0, end - length - 1) : end]
            padded = np.zeros(length + 1, dtype=np.int64)
            padded[-len(piece) :] = piece
            pieces.append(padded)
    return np.array(pieces).reshape(-1, length + 1), last


class Trained:
    """A SASRec fitted on ``train``, trained ``epochs`` at a time."""

    def __init__(self, train: dict[str, list[Event]], item_ids: Sequence[str], setting: Setting):
        import torch

        torch.manual_seed(SEED)
        self.data = Interactions(train, item_ids)
        self.setting = setting
        self.rows, self.last = _sequences(train, self.data, setting.length)
        self.model = _model(len(item_ids), setting)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
        self.rng = np.random.default_rng(SEED)
        self.epochs = 0

    def train(self, epochs: int) -> None:
        import torch

        self.model.train()
        for _ in range(epochs):
            order = self.rng.permutation(len(self.rows))
            for start in range(0, len(self.rows), BATCH):
                batch = torch.from_numpy(self.rows[order[start : start + BATCH]])
                inputs, targets = batch[:, :-1], batch[:, 1:]
                mask = (targets > 0) & (inputs > 0)  # a next item after a real one
                logits = self.model.logits(self.model(inputs)[mask])
                loss = torch.nn.functional.cross_entropy(logits, targets[mask] - 1)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
            self.epochs += 1

    def ranker(self, users: Sequence[str]) -> Ranker:
        """Scores from each user's whole training sequence (its last ``length`` items)."""
        import torch

        self.model.eval()
        position = {user: row for row, user in enumerate(users)}
        rows = torch.from_numpy(self.last[[self.data.user_index[u] for u in users]])
        with torch.no_grad():
            scores = np.concatenate(
                [
                    self.model.logits(self.model(rows[s : s + 256])[:, -1]).numpy()
                    for s in range(0, len(rows), 256)
                ]
            )
        return lambda user: self.data.top(user, scores[position[user]])


def tune(
    tuning: Split, item_ids: Sequence[str], validation: dict[str, set[str]]
) -> tuple[Setting, dict[str, float]]:
    """The setting and number of epochs with the best validation NDCG@10."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tried: dict[str, float] = {}
    best: tuple[float, Setting] | None = None
    for length, hidden, dropout in GRID:
        trained = Trained(tuning.train, item_ids, Setting(length, hidden, dropout))
        while trained.epochs < MAX_EPOCHS:
            trained.train(CHECK_EVERY)
            found = float(
                np.mean(per_user(trained.ranker(sorted(validation)), validation)["ndcg@10"])
            )
            tried[f"{length}, {hidden}, {dropout:g}, {trained.epochs}"] = round(found, 4)
            if best is None or found > best[0]:
                best = (found, Setting(length, hidden, dropout, trained.epochs))
    assert best is not None
    return best[1], tried


def sasrec(
    train: dict[str, list[Event]], item_ids: Sequence[str], setting: Setting, users: Sequence[str]
) -> Callable[[], Ranker]:
    def make() -> Ranker:
        trained = Trained(train, item_ids, setting)
        trained.train(setting.epochs)
        return trained.ranker(users)

    return make
