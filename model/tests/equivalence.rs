//! The three ways to run the LM (whole sequence, streaming with a carried state, token by
//! token) give the same logits in fp32, for lengths that are not multiples of the chunk size,
//! chunk sizes 8..64, ngroups 1 and 2, with and without an initial state.
use stuffed_model::{Exec, Mamba2LM, MambaConfig, ModelSpec, State};
use tch::{Device, Kind, Tensor};

fn model(chunk: i64, ngroups: i64) -> Mamba2LM {
    let cfg: MambaConfig = ModelSpec {
        d_model: Some(64),
        n_layer: Some(2),
        d_state: Some(16),
        headdim: Some(16),
        ngroups: Some(ngroups),
        chunk_size: Some(chunk),
        vocab_size: Some(257),
        ..Default::default()
    }
    .resolve(None)
    .unwrap();
    Mamba2LM::seeded(&cfg, Device::Cpu, 7).unwrap()
}

/// Random tokens, drawn under the process-wide seed lock: a draw from torch's global generator
/// while another test thread initialises a seeded model would shift that model's weights
/// (`same_seed_same_weights_while_other_threads_initialise` failed so, 1 run in the clean
/// checkout's suite).
fn tokens(b: i64, l: i64) -> Tensor {
    stuffed_model::rng::with_torch_seed(11, || Tensor::randint(257, [b, l], (Kind::Int64, Device::Cpu)))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Float) - b.to_kind(Kind::Float)).abs().max().double_value(&[])
}

/// A non-zero starting state: the state after a random prefix.
fn warm_state(lm: &Mamba2LM, prefix: &Tensor) -> State {
    let mut st = lm.zero_state(prefix.size()[0], Kind::Float);
    let _ = lm.forward(prefix, Some(&mut st), &mut Exec::new(Kind::Float));
    st
}

#[test]
fn chunked_step_and_streaming_agree() {
    let _g = tch::no_grad_guard();
    for &(chunk, groups, len, with_state) in
        &[(8, 1, 45, false), (16, 2, 37, true), (32, 1, 70, true), (64, 2, 99, false), (64, 1, 130, true)]
    {
        let lm = model(chunk, groups);
        let toks = tokens(2, len);
        let mut ex = Exec::new(Kind::Float);
        let prefix = tokens(2, 13);
        let start = |lm: &Mamba2LM| if with_state { warm_state(lm, &prefix) } else { lm.zero_state(2, Kind::Float) };

        // Whole sequence (with the initial state when there is one).
        let mut st_full = start(&lm);
        let full = if with_state { lm.forward(&toks, Some(&mut st_full), &mut ex) } else { lm.forward(&toks, None, &mut ex) };

        // Streaming in uneven chunks.
        let mut st = start(&lm);
        let mut parts = Vec::new();
        let mut pos = 0;
        for w in [1, 7, chunk + 3, 5].iter().cycle() {
            if pos >= len {
                break;
            }
            let n = (*w).min(len - pos);
            parts.push(lm.forward(&toks.narrow(1, pos, n), Some(&mut st), &mut ex));
            pos += n;
        }
        let streamed = Tensor::cat(&parts, 1);

        // Token by token.
        let mut st_step = start(&lm);
        let steps: Vec<Tensor> = (0..len).map(|t| lm.step(&toks.select(1, t), &mut st_step, &mut ex)).collect();
        let stepped = Tensor::stack(&steps, 1);

        let tag = format!("chunk={chunk} groups={groups} len={len} state={with_state}");
        assert!(max_diff(&full, &streamed) <= 1e-4, "{tag}: whole vs streaming {}", max_diff(&full, &streamed));
        assert!(max_diff(&full, &stepped) <= 1e-4, "{tag}: whole vs step {}", max_diff(&full, &stepped));
        if with_state {
            for (a, b) in st_full.layers.iter().zip(&st_step.layers) {
                assert!(max_diff(&a.ssm, &b.ssm) <= 1e-4, "{tag}: final ssm state");
                assert!(max_diff(&a.conv, &b.conv) <= 1e-5, "{tag}: final conv state");
            }
        }
    }
}

#[test]
fn gradients_reach_every_parameter_and_are_finite() {
    let lm = model(16, 2);
    let toks = tokens(2, 40);
    let logits = lm.forward(&toks.narrow(1, 0, 39), None, &mut Exec::new(Kind::Float));
    let loss = Mamba2LM::token_losses(&logits, &toks.narrow(1, 1, 39)).mean(Kind::Float);
    loss.backward();
    for (name, p) in lm.params().iter() {
        let g = p.grad();
        assert!(g.defined(), "{name} has no gradient");
        assert!(stuffed_model::all_finite(&g), "{name} has a non-finite gradient");
        assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name} has an all-zero gradient");
    }
}

#[test]
fn same_seed_same_weights_while_other_threads_initialise() {
    // Torch's generator is process-wide: eight threads building models with two seeds at once
    // must still get one set of weights per seed.
    let cfg = model(16, 1).cfg;
    let build = |seed: i64| {
        let lm = Mamba2LM::seeded(&cfg, Device::Cpu, seed).unwrap();
        lm.params().iter().map(|(_, t)| t.reshape([-1])).collect::<Vec<_>>()
    };
    let weights: Vec<(i64, Vec<Tensor>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|i| s.spawn(move || (i % 2, build(i % 2)))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (seed, w) in &weights {
        let first = &weights.iter().find(|(s, _)| s == seed).unwrap().1;
        assert!(w.iter().zip(first).all(|(a, b)| a.equal(b)), "seed {seed}: weights differ between threads");
    }
    assert!(!weights[0].1[0].equal(&weights[1].1[0]), "two seeds, two inits");
}

/// The SSD backend is the model's own value, not a process-wide setting: a model starts on
/// `tensor`, `auto` resolves on its device, and two models with different backends run side by
/// side in one process (on the CPU `fused` runs the tensor twins of its kernels) with the same
/// logits.
#[test]
fn ssd_backend_is_carried_by_the_model() {
    use stuffed_model::ssd::SsdBackend;
    let _g = tch::no_grad_guard();
    let reference = model(16, 2);
    assert_eq!(reference.ssd(), SsdBackend::Tensor);
    let auto = model(16, 2).with_ssd(SsdBackend::Auto).unwrap();
    assert_eq!(auto.ssd(), SsdBackend::Tensor, "auto on the CPU");
    let fused = model(16, 2).with_ssd(SsdBackend::Fused).unwrap();
    assert_eq!((fused.ssd(), reference.ssd()), (SsdBackend::Fused, SsdBackend::Tensor));
    let toks = tokens(2, 45);
    let a = fused.forward(&toks, None, &mut Exec::new(Kind::Float));
    let b = reference.forward(&toks, None, &mut Exec::new(Kind::Float));
    assert!(max_diff(&a, &b) < 1e-4, "fused (CPU twins) vs tensor: {}", max_diff(&a, &b));
}
