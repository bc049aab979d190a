"""Training (Adam, cosine learning rate) and evaluation on in-memory tensors."""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import torch
from torch import nn

from ._common import ArrayLike, StepCallback, _as_tensor, _forward_batched


def _trainable_suffix(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """(frozen prefix, rest) of an nn.Sequential whose first children hold no trainable
    parameter and behave the same in train and eval mode; (None, model) otherwise.

    When Algorithm 1 retrains only the layers after an encoded one, the prefix's output is the
    same at every epoch: computing it once makes retraining several times cheaper.
    """
    if not isinstance(model, nn.Sequential):
        return None, model
    children = list(model)
    cut = 0
    for child in children:
        if any(p.requires_grad for p in child.parameters()):
            break
        mode_dependent = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)
        if any(isinstance(m, mode_dependent) for m in child.modules()):
            break
        cut += 1
    if cut == 0 or cut == len(children):
        return None, model
    return nn.Sequential(*children[:cut]), nn.Sequential(*children[cut:])


class _ProgressBar(Protocol):
    """What `train` uses of a tqdm bar (tqdm ships no type information)."""

    def update(self, n: int = 1) -> object: ...

    def set_postfix(self, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


def _progress_bar(total: int, desc: str, enabled: bool) -> _ProgressBar | None:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError("progress bars need tqdm: pip install tqdm (or pass progress=False)") from None
    return tqdm(total=total, desc=desc, unit="batch", leave=False)


def train(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    weight_decay: float = 0.0,
    on_step: StepCallback | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> list[float]:
    """Train the parameters that require grad with Adam and softmax cross-entropy.

    The learning rate follows a half cosine from `lr` to 0 over all steps of this call; the
    data are reshuffled every epoch from `seed`, so a call is reproducible (same seed, same
    thread count). `on_step(step, total_steps)` runs after every optimizer step (dynamic network
    surgery updates its masks there). `augment(batch, generator)` returns a transformed batch of
    inputs (data augmentation, e.g. random shifts), drawing its randomness from the generator
    given, so a call stays reproducible. With `progress`, one tqdm bar per epoch. For an
    nn.Sequential whose leading children are frozen, their output is computed once (not with
    `augment`, whose inputs change at every step).
    Returns the mean training loss of each epoch.
    """
    if int(epochs) < 0 or int(batch_size) < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1 and lr > 0; got {epochs}, {batch_size}, {lr}")
    x = _as_tensor(x, torch.float32)
    y = _as_tensor(y, torch.long)
    if x.shape[0] != y.shape[0] or y.dim() != 1:
        raise ValueError(f"x has {x.shape[0]} samples and y has shape {tuple(y.shape)}; need one label per sample")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires grad: nothing to train")
    if epochs == 0 or x.shape[0] == 0:
        return []
    prefix, rest = _trainable_suffix(model) if augment is None else (None, model)
    inputs = _forward_batched(prefix, x) if prefix is not None else x
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    total = steps_per_epoch * int(epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * s / total)))
    generator = torch.Generator().manual_seed(int(seed))
    losses = []
    step = 0
    rest.train()
    for epoch in range(int(epochs)):
        order = torch.randperm(x.shape[0], generator=generator)
        bar = _progress_bar(steps_per_epoch, f"{desc} {epoch + 1}/{epochs}", progress)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size: (i + 1) * batch_size]
            batch = inputs[idx] if augment is None else augment(inputs[idx], generator)
            loss = nn.functional.cross_entropy(rest(batch), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            running += float(loss.detach())
            if on_step is not None:
                on_step(step, total)
            if bar is not None:
                bar.update(1)
                if i % 50 == 0:
                    bar.set_postfix(loss=f"{running / (i + 1):.4f}")
        if bar is not None:
            bar.close()
        losses.append(running / steps_per_epoch)
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, x: ArrayLike, y: ArrayLike, *, batch_size: int = 2000) -> float:
    """Classification accuracy (fraction of correct argmax predictions), in eval mode."""
    x = _as_tensor(x, torch.float32)
    y = _as_tensor(y, torch.long)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples and y has {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise ValueError("no samples to evaluate")
    logits = _forward_batched(model, x, batch_size)
    return float((logits.argmax(dim=1) == y).double().mean())
