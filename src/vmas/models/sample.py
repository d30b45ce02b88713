"""Token sampling for VMAs: the delayed codebook pattern, one step at a time, guided by the video.

The music decoder is audiocraft's ``LMModel``; this loop follows ``LMModel.generate`` (the delay
pattern, audiocraft's streaming state as the self-attention KV cache, special tokens where the
pattern has no code) but takes the video condition as tensors instead of text attributes, and
samples with a seeded ``torch.Generator`` so a seed gives the same music on every run.

Classifier-free guidance: every step runs the batch twice in one pass, once with the projected
video and once with it nulled (as training drops it with ``cfg_dropout``), and mixes the logits
``uncond + guidance x (cond - uncond)``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from vmas.models.fast_decoder import FastDecoder
from vmas.models.vmas import VMAs


@dataclass(frozen=True)
class SamplingSettings:
    guidance: float = 3.0  # classifier-free guidance scale; 1 = conditional only, 0 = no video
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 250  # 0 = off
    top_p: float = 0.0  # 0 = off; when > 0 it is used instead of top_k


Generators = torch.Generator | list[torch.Generator] | None


def _multinomial(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One draw per row of ``probs [B, K, n]`` -> ``[B, K, 1]``; a list gives each batch row its own generator,
    so a sequence's music depends on its own seed, not on what else is in the batch."""
    if isinstance(generator, list):
        return torch.stack([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generator)])
    return torch.multinomial(probs.flatten(0, -2), 1, generator=generator).view(*probs.shape[:-1], 1)


def sample_logits(logits: torch.Tensor, settings: SamplingSettings, generator: Generators = None) -> torch.Tensor:
    """``logits [B, K, card]`` -> tokens ``[B, K, 1]`` (greedy, top-p, top-k or plain sampling)."""
    if settings.temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    if settings.top_p > 0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > settings.top_p  # keep the smallest set reaching top_p
        return order.gather(-1, _multinomial(sorted_probs.masked_fill(outside, 0.0), generator))
    if settings.top_k > 0:
        top, idx = probs.topk(min(settings.top_k, probs.shape[-1]), dim=-1)
        return idx.gather(-1, _multinomial(top, generator))
    return _multinomial(probs, generator)


@torch.no_grad()
def generate_codes(model: VMAs, frames: torch.Tensor, steps: int, settings: SamplingSettings = SamplingSettings(),
                   generator: Generators = None, prompt: torch.Tensor | None = None,
                   progress: Callable[[int, int], None] | None = None, decoder: str = "fast") -> torch.Tensor:
    """``frames [B, 3, F, H, W]`` -> codes ``[B, K, steps]`` in ``[0, card)``.

    ``steps`` is the music length in codec frames (seconds x ``codec.frame_rate``). ``prompt
    [B, K, P]`` (``P < steps``) are codes the music must start with (the previous window's end,
    when a long video is generated window by window); they are returned as given. ``generator``: one
    for the batch, or a list with one per sequence. ``decoder``: ``fast``
    (:class:`~vmas.models.fast_decoder.FastDecoder`: cross-attention once, a preallocated
    cache), ``static`` (the same with fixed shapes per step, replayed as a CUDA graph on CUDA
    devices), or ``audiocraft`` (``LMModel``'s own streaming, the reference).
    """
    lm = model.music_decoder
    if lm.training or model.training:
        raise RuntimeError("generate_codes needs the model in eval mode (model.eval())")
    device = frames.device
    batch, k = frames.shape[0], model.num_codebooks
    video = model.video_encoder(frames)  # [B, T', Dv]
    cond = model.condition(video)
    guided = settings.guidance != 1.0
    if guided:  # one pass over [conditioned; nulled]
        null = model.condition(video, torch.zeros(batch, dtype=torch.bool, device=device))
        cond = {name: (torch.cat([cond[name][0], null[name][0]]), torch.cat([cond[name][1], null[name][1]]))
                for name in cond}

    pattern = lm.pattern_provider.get_pattern(steps)
    unknown = -1
    codes = torch.full((batch, k, steps), unknown, dtype=torch.long, device=device)
    given = 0 if prompt is None else prompt.shape[-1]
    if prompt is not None:
        if given >= steps or prompt.shape[:2] != (batch, k):
            raise ValueError(f"prompt {tuple(prompt.shape)} does not fit [{batch}, {k}, < {steps}]")
        codes[..., :given] = prompt
    sequence, _, mask = pattern.build_pattern_sequence(codes, lm.special_token_id)  # [B, K, S], mask [K, S]
    start = pattern.get_first_step_with_timesteps(given)
    total = sequence.shape[-1]
    if decoder in ("fast", "static"):
        fast = FastDecoder(lm, static=decoder == "static", cuda_graph=decoder == "static" and device.type == "cuda")
        fast.start(cond, total)
        forward, context = fast.step, contextlib.nullcontext()
    elif decoder == "audiocraft":
        forward, context = (lambda chunk: lm(chunk, conditions=[], condition_tensors=cond)), lm.streaming()
    else:
        raise ValueError(f"decoder must be fast, static or audiocraft, not {decoder!r}")
    with context:
        previous = 0
        for offset in range(start, total):
            chunk = sequence[..., previous:offset]  # the steps the decoder has not seen yet
            if guided:
                chunk = torch.cat([chunk, chunk])
            logits = forward(chunk)[:, :, -1]  # [B(x2), K, card]
            if guided:
                c, u = logits.float().split(batch)
                logits = u + settings.guidance * (c - u)
            token = sample_logits(logits, settings, generator)  # [B, K, 1]
            valid = mask[..., offset : offset + 1].expand(batch, -1, -1)
            token[~valid] = lm.special_token_id
            current = sequence[..., offset : offset + 1]
            sequence[..., offset : offset + 1] = torch.where(current == unknown, token, current)  # keep the prompt
            previous = offset
            if progress is not None:
                progress(offset - start + 1, total - start)
    out, _, _ = pattern.revert_pattern_sequence(sequence, special_token=unknown)
    out = out[..., :steps]
    if (out < 0).any() or (out >= model.card).any():
        raise RuntimeError("sampling left steps without a valid code")  # the pattern guarantees this never happens
    return out
