//! One training step, shared by the trainer and `stuffed bench train`: forward, loss,
//! backward, clip, AdamW.
use tch::{Kind, Tensor};

use crate::lm::Mamba2LM;
use crate::mixer::Exec;
use crate::ssd::{fused, SsdBackend};
use crate::state::State;
use crate::train::adamw::AdamW;

/// Ignored target id: positions whose loss does not count (e.g. a passkey prompt's filler).
pub const IGNORE: i64 = -100;

/// A batch of training sequences: inputs [B, L] and targets [B, L] (next tokens, or IGNORE).
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
}

impl Batch {
    pub fn tokens(&self) -> i64 {
        self.inputs.numel() as i64
    }
}

/// The training loss (fp32 scalar): per sequence, the mean cross-entropy over its scored
/// targets; then the mean over the sequences that have any. With every target scored this is
/// the plain token mean; in a mixture, a passkey prompt scored on its few answer tokens weighs
/// as much as a corpus sequence instead of almost nothing.
pub fn batch_loss(lm: &Mamba2LM, batch: &Batch, state: Option<&mut State>, kind: Kind) -> Tensor {
    let logits = lm.forward(&batch.inputs, state, &mut Exec::new(kind));
    let v = *logits.size().last().expect("vocab dim");
    let flat = logits.reshape([-1, v]);
    let per_token = if fused_cross_entropy() && lm.ssd() == SsdBackend::Fused && fused::cross_entropy_fits(&flat) {
        fused::cross_entropy(&flat, &batch.targets.reshape([-1]), IGNORE)
    } else {
        // log-softmax straight from the compute kind into fp32 (no separate fp32 copy of the
        // logits, the largest activation of a big-vocabulary model).
        flat.log_softmax(-1, Kind::Float).g_nll_loss::<Tensor>(&batch.targets.reshape([-1]), None, tch::Reduction::None, IGNORE)
    }
    .view_as(&batch.targets); // [B, L], 0 where ignored
    let counts = batch.targets.ne(IGNORE).sum_dim_intlist([1i64].as_slice(), false, Kind::Float); // [B]
    let rows = per_token.sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / counts.clamp_min(1.0);
    let scored = counts.gt(0.0).to_kind(Kind::Float);
    (rows * &scored).sum(Kind::Float) / scored.sum(Kind::Float).clamp_min(1.0)
}

/// Whether the training loss takes the fused cross-entropy kernel (`fused::cross_entropy`) on
/// the fused backend: yes unless STUFFED_FUSED_CE=0 (the tensor ops, for an A/B or a check;
/// the GPU test `cross_entropy_equals_tensor_ops` compares the two).
fn fused_cross_entropy() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| fused::switched_on("STUFFED_FUSED_CE"))
}

/// What a step leaves on the device; read both with one sync via `read`.
pub struct StepResult {
    pub loss: Tensor,
    pub grad_norm: Tensor,
}

impl StepResult {
    /// (loss, grad_norm) on the host.
    pub fn read(&self) -> (f64, f64) {
        let both = Tensor::stack(&[self.loss.detach(), self.grad_norm.detach()], 0).to_device(tch::Device::Cpu);
        (both.double_value(&[0]), both.double_value(&[1]))
    }
}

/// Forward, backward and one optimizer update. `state` (truncated BPTT) starts the batch
/// from a carried, detached state and is left at the end of the batch. With `micro` rows per
/// micro-batch (gradient accumulation), the batch is processed in slices whose losses are
/// weighted by their share of the rows: the same update as the whole batch at once, with the
/// activation memory of one slice.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    lm: &Mamba2LM,
    opt: &mut AdamW,
    batch: &Batch,
    state: Option<&mut State>,
    kind: Kind,
    lr: f64,
    clip: f64,
    micro: Option<i64>,
) -> StepResult {
    opt.zero_grad();
    let rows = batch.inputs.size()[0];
    let micro = micro.unwrap_or(rows).clamp(1, rows.max(1));
    let loss = if micro >= rows || state.is_some() {
        let loss = batch_loss(lm, batch, state, kind);
        loss.backward();
        loss.detach()
    } else {
        let mut total = Tensor::zeros([], (Kind::Float, lm.device()));
        let mut start = 0;
        while start < rows {
            let n = micro.min(rows - start);
            let slice = Batch { inputs: batch.inputs.narrow(0, start, n), targets: batch.targets.narrow(0, start, n) };
            let loss = batch_loss(lm, &slice, None, kind) * (n as f64 / rows as f64);
            loss.backward();
            total += loss.detach();
            start += n;
        }
        total
    };
    let stats = opt.step(lr, clip);
    StepResult { loss, grad_norm: stats.grad_norm }
}
