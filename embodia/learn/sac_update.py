"""SAC's gradients written by hand: forward passes that keep their activations and backward passes without autograd.

Autograd costs ~1,000 aten ops per SAC update (graph building, the backward engine, its bookkeeping); at SAC's
sizes that per-op cost is a third to a half of the update. The same gradients by hand take ~150 ops. The networks'
own parameters (or their bfloat16 working copies, `TrainingCopy`) are read directly, the gradients are written into
persistent `.grad` buffers, so optimizers, checkpoints and export see the modules exactly as before. The loss
definitions these gradients differentiate are `critic_loss` and `actor_loss` in `embodia.learn.sac` (tests compare).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn import functional as F

from embodia.learn.nets import _LOG_STD_HALF_RANGE, _LOG_STD_MID, TrainingCopy

ACTIVATION_FORWARD: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "tanh": torch.tanh, "elu": F.elu, "silu": F.silu}
_LOG_PROB_CONSTANT = 0.5 * math.log(2 * math.pi) + 2 * math.log(2)


def relu_bf16_(x: torch.Tensor) -> torch.Tensor:
    """In-place relu of a bfloat16 tensor on its int16 view: a bfloat16 with its sign bit set is a negative int16, so
    clamping the integers at 0 zeroes exactly the negative values (and -0; a NaN with its sign bit set becomes 0)."""
    x.view(torch.int16).clamp_min_(0)
    return x


def activation_forward(name: str, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation `name` for the hand-written passes on `dtype` tensors. relu runs in place on the matmul output
    (its backward reads only the output): writing into a fresh buffer cost ~4x the in-place pass in the SAC update
    (~80 vs ~20 us per [2, 256, 256] bf16 relu), and bf16 relu goes through int16 (`relu_bf16_`)."""
    if name not in ACTIVATION_FORWARD:
        raise ValueError(f"activation={name!r}; use one of {sorted(ACTIVATION_FORWARD)}")
    if name == "relu":
        return relu_bf16_ if dtype == torch.bfloat16 else torch.relu_
    return ACTIVATION_FORWARD[name]


def activation_backward(name: str, grad: torch.Tensor, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. an activation's input from the gradient w.r.t. its output (`pre` in, `post` out)."""
    if name == "relu":
        if grad.dtype == torch.bfloat16 and post.dtype == torch.bfloat16:
            # on the int16 views (a bfloat16 relu output is >= 0, so post > 0 exactly where its int16 is): the same
            # bits, ~2.5x cheaper than bfloat16's threshold_backward (30 vs 78 us on [2, 256, 256], measured alone)
            return torch.ops.aten.threshold_backward(grad.view(torch.int16), post.view(torch.int16), 0).view(torch.bfloat16)
        return torch.ops.aten.threshold_backward(grad, post, 0)
    if name == "tanh":
        return torch.ops.aten.tanh_backward(grad, post)
    if name == "elu":
        return torch.ops.aten.elu_backward(grad, 1.0, 1, 1, True, post)
    if name == "silu":
        return torch.ops.aten.silu_backward(grad, pre)
    raise ValueError(f"activation={name!r}; use one of {sorted(ACTIVATION_FORWARD)}")


def fused_relu_linear_available(dtype: torch.dtype, activation: str) -> bool:
    """True where the actor's bfloat16 linears can run as oneDNN's fused linear (+ bias + relu) op, ~15% cheaper than
    addmm then relu at 512x256x256 (bias and relu are epilogues of the matmul, no bias copy, no relu pass; measured
    alone). float32 keeps addmm (MKL, and bit-identical results); so do CPUs without oneDNN's bf16 kernels (no
    AVX-512: the fused op cannot be built there, while addmm's bf16 fallback runs anywhere)."""
    return (dtype == torch.bfloat16 and activation == "relu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and _onednn_has_bf16())


def _onednn_has_bf16() -> bool:
    """True where oneDNN has bfloat16 kernels on this CPU (AVX-512 BW and up)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def persistent_grads(work: TrainingCopy) -> list[torch.Tensor]:
    """The working copy's `.grad` buffers, created once and overwritten by every hand-written backward pass (for a
    float32 copy these are the master's own gradients; for bf16, `grads_to_master` copies them over)."""
    for p in work.params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    return [p.grad for p in work.params]


class HandSAC:
    """SAC's critic, actor and temperature gradients on `TrainingCopy` working weights, by hand.

    Layouts: the twin critic is a chain of `EnsembleLinear` (weights [E, in, out], biases [E, 1, out]) with the
    activation between layers; the actor is `SquashedGaussianActor` (trunk `nn.Linear`s, each followed by the
    activation, then the mean and log-std heads). Random draws are those of `SquashedGaussianActor.sample`, in the
    same order as the autograd losses (next-obs noise for the critic target, then obs noise for the actor).
    """

    def __init__(self, actor: TrainingCopy, q: TrainingCopy, q_target: TrainingCopy, activation: str, obs_dim: int) -> None:
        self.activation = activation
        self.obs_dim = obs_dim
        self.actor, self.q, self.q_target = actor.params, q.params, q_target.params
        self.dtype = self.actor[0].dtype
        self.act = activation_forward(activation, self.dtype)  # relu in place: `pre` and `post` are one tensor
        self.fused_relu_linear = fused_relu_linear_available(self.dtype, activation)
        self.actor_grads = persistent_grads(actor)
        self.q_grads = persistent_grads(q)

    # ---- actor
    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activate: bool) -> torch.Tensor:
        """x @ weight.T + bias ([out, in] weights), then the activation when `activate`. On bfloat16 with relu this is
        one oneDNN linear with the bias and relu fused into the matmul (no separate bias copy, no relu pass)."""
        if self.fused_relu_linear:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if activate else "none", [], "")
        out = torch.addmm(bias, x, weight.t())
        return self.act(out) if activate else out

    def _actor_forward(self, obs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(trunk activations [input, pre_0, post_0, ...], the two heads' weights as one [2 act, hidden] matrix,
        float32 head outputs [B, 2 act]: the mean, then the raw log-std)."""
        x = obs.to(self.dtype)
        cache = [x]
        for i in range(0, len(self.actor) - 4, 2):
            if self.activation == "relu":  # in place or fused: pre and post are one tensor
                x = self._linear(x, self.actor[i], self.actor[i + 1], activate=True)
                cache += [x, x]
            else:
                pre = self._linear(x, self.actor[i], self.actor[i + 1], activate=False)
                x = self.act(pre)
                cache += [pre, x]
        w_mean, b_mean, w_log_std, b_log_std = self.actor[-4:]
        # the mean and log-std heads as one matmul: a [hidden, 2 act] product costs about what one head's does
        heads_weight, heads_bias = torch.cat([w_mean, w_log_std]), torch.cat([b_mean, b_log_std])
        return cache, heads_weight, self._linear(x, heads_weight, heads_bias, activate=False).float()

    def sample(self, *obs_parts: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """`SquashedGaussianActor.sample` of each observation batch, with the intermediates the backward pass needs:
        one forward pass over all parts, one noise draw per part in order (the draws of separate `sample` calls)."""
        obs = obs_parts[0] if len(obs_parts) == 1 else torch.cat(obs_parts)
        cache, heads_weight, heads = self._actor_forward(obs)
        act_dim = heads.shape[1] // 2
        mean, raw = heads[:, :act_dim], heads[:, act_dim:]
        noise = torch.cat([torch.randn(len(part), act_dim) for part in obs_parts])
        squashed_log_std = torch.tanh(raw)
        log_std = squashed_log_std.mul(_LOG_STD_HALF_RANGE).add_(_LOG_STD_MID)
        std = log_std.exp()
        pre_tanh = torch.addcmul(mean, std, noise)
        constant = noise.square().mul_(-0.5).sub_(_LOG_PROB_CONSTANT)
        log_prob = (constant - log_std + 2 * (pre_tanh + F.softplus(-2 * pre_tanh))).sum(-1)
        whole = {"action": torch.tanh(pre_tanh), "log_prob": log_prob, "std_noise": std.mul_(noise),
                 "squashed_log_std": squashed_log_std}
        parts, start = [], 0
        for part in obs_parts:
            rows = slice(start, start + len(part))
            parts.append({"cache": [c[rows] for c in cache], "heads_weight": heads_weight,
                          **{k: v[rows] for k, v in whole.items()}})
            start += len(part)
        return parts

    def _actor_backward(self, cache: list[torch.Tensor], heads_weight: torch.Tensor, grad_mean: torch.Tensor,
                        grad_raw: torch.Tensor) -> None:
        """Weight gradients of the actor into its `.grad` buffers from d loss / d (mean, raw log-std) [B, act] (the
        heads as one matmul with `heads_weight`, the forward pass's [2 act, hidden] concatenation)."""
        grads, params = self.actor_grads, self.actor
        act_dim = grad_mean.shape[1]
        grad_heads = torch.cat([grad_mean, grad_raw], dim=1).to(self.dtype)
        features = cache[-1]
        heads_weight_grad, heads_bias_grad = torch.mm(grad_heads.t(), features), grad_heads.sum(0)
        grads[-4].copy_(heads_weight_grad[:act_dim])
        grads[-3].copy_(heads_bias_grad[:act_dim])
        grads[-2].copy_(heads_weight_grad[act_dim:])
        grads[-1].copy_(heads_bias_grad[act_dim:])
        grad = torch.mm(grad_heads, heads_weight)
        for layer in reversed(range((len(params) - 4) // 2)):
            grad = activation_backward(self.activation, grad, cache[2 * layer + 1], cache[2 * layer + 2])
            torch.mm(grad.t(), cache[2 * layer], out=grads[2 * layer])
            torch.sum(grad, 0, out=grads[2 * layer + 1])
            if layer > 0:
                grad = torch.mm(grad, params[2 * layer])

    # ---- critic
    def _q_forward(self, params: list[torch.Tensor], obs: torch.Tensor, action: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(activations [input, pre_0, post_0, ...], float32 Q values [E, B]) of the ensemble chain `params`."""
        x = torch.cat([obs, action], dim=-1).to(self.dtype)
        h = x.expand(params[0].shape[0], -1, -1)
        cache = [h]
        last = len(params) - 2
        for i in range(0, last, 2):
            pre = torch.baddbmm(params[i + 1], h, params[i])
            h = self.act(pre)
            cache += [pre, h]
        return cache, torch.baddbmm(params[last + 1], h, params[last]).squeeze(-1).float()

    def _q_backward(self, cache: list[torch.Tensor], grad_q: torch.Tensor, weights: bool) -> torch.Tensor | None:
        """Backward through the critic from d loss / d Q [E, B]: weight gradients into the critic's `.grad` buffers
        (`weights`), else d loss / d action [B, act] summed over the members (the actor's path through the critic)."""
        params = self.q
        grad = grad_q.to(self.dtype).unsqueeze(-1)
        for layer in reversed(range(1, len(params) // 2)):
            if weights:
                self._q_weight_grads(layer, cache[2 * layer], grad)
            weight = params[2 * layer].transpose(1, 2)
            # the output layer's [E, B, 1] @ [E, 1, in] is an outer product: a broadcast multiply, not a matmul call
            grad = grad * weight if grad.shape[-1] == 1 else torch.bmm(grad, weight)
            grad = activation_backward(self.activation, grad, cache[2 * layer - 1], cache[2 * layer])
        if weights:
            self._q_weight_grads(0, cache[0], grad)
            return None
        action_rows = params[0][:, self.obs_dim:, :]
        return torch.bmm(grad, action_rows.transpose(1, 2)).sum(0).float()

    def _q_weight_grads(self, layer: int, layer_input: torch.Tensor, grad: torch.Tensor) -> None:
        """Weight and bias gradients of critic layer `layer` from its input [E, B, in] and output gradient."""
        weight_grad = self.q_grads[2 * layer]
        if weight_grad.shape[-1] == 1:
            # the output layer's [E, in, 1] is a matrix-vector product: as [E, 1, B] @ [E, B, in] no operand is
            # transposed (a transposed left operand is oneDNN's slow layout: ~1.8x a plain 2x256x256 bf16 bmm)
            torch.bmm(grad.transpose(1, 2), layer_input, out=weight_grad.transpose(1, 2))
        else:
            torch.bmm(layer_input.transpose(1, 2), grad, out=weight_grad)
        torch.sum(grad, 1, keepdim=True, out=self.q_grads[2 * layer + 1])

    # ---- the losses' gradients
    @torch.no_grad()
    def critic_step_grads(self, batch: dict[str, torch.Tensor], next_sample: dict[str, torch.Tensor], alpha: float,
                          gamma: float) -> torch.Tensor:
        """Soft Bellman error of both heads (`critic_loss`) with `next_sample` = `sample(batch["next_obs"])`; its
        gradients land in the critic's `.grad` buffers."""
        _, next_q = self._q_forward(self.q_target, batch["next_obs"], next_sample["action"])
        soft_next = next_q.min(dim=0).values.sub_(next_sample["log_prob"], alpha=alpha)
        target = torch.addcmul(batch["rewards"], 1.0 - batch["terminated"], soft_next, value=gamma)
        cache, q_values = self._q_forward(self.q, batch["obs"], batch["actions"])
        error = q_values.sub_(target)  # [E, B]
        batch_size = error.shape[1]
        loss = error.square().sum().mul_(0.5 / batch_size)
        self._q_backward(cache, error.div_(batch_size), weights=True)
        return loss

    @torch.no_grad()
    def actor_step_grads(self, obs: torch.Tensor, sample: dict[str, torch.Tensor], alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy loss, mean log-probability) of `actor_loss` with `sample` = `sample(obs)` (taken before the critic
        step: the actor has not changed since); its gradients land in the actor's `.grad` buffers.

        d log_prob / d pre_tanh = 2 tanh(pre_tanh) (the softplus correction's derivative), d action / d pre_tanh =
        1 - action^2, and d pre_tanh / d log_std = std * noise; the min-Q gradient flows only to the smaller head.
        """
        action, log_prob = sample["action"], sample["log_prob"]
        cache, q_values = self._q_forward(self.q, obs, action)
        q_min, member = q_values.min(dim=0)
        batch_size = action.shape[0]
        loss = (log_prob * alpha - q_min).mean()
        grad_q = torch.zeros_like(q_values).scatter_(0, member.unsqueeze(0), -1.0 / batch_size)
        grad_action = self._q_backward(cache, grad_q, weights=False)
        # d loss / d pre_tanh: through the log-prob's tanh correction and through the action
        grad_pre_tanh = torch.addcmul(action * (2 * alpha / batch_size), grad_action, 1.0 - action.square())
        grad_log_std = torch.addcmul(torch.full_like(action, -alpha / batch_size), grad_pre_tanh, sample["std_noise"])
        squashed = sample["squashed_log_std"]
        grad_raw = grad_log_std.mul_(1.0 - squashed.square()).mul_(_LOG_STD_HALF_RANGE)
        self._actor_backward(sample["cache"], sample["heads_weight"], grad_pre_tanh, grad_raw)
        return loss, log_prob.mean()
