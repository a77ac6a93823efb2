//! Loss terms shared by training and evaluation.

use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;

/// Bernoulli negative log-likelihood from logits, summed over pixels: `[batch]`.
/// `(1 - x)·l - log σ(l)` equals BCE-with-logits and is stable for any logit.
pub fn bce_logits_per_image(logits: Tensor<2>, x: Tensor<2>) -> Tensor<1> {
    ((x.neg() + 1.0) * logits.clone() - log_sigmoid(logits))
        .sum_dim(1)
        .squeeze_dim(1)
}

/// KL(q(z|x) ‖ N(0, I)) per latent dimension, `[batch, latent]`.
pub fn kl_per_dim(mu: Tensor<2>, logvar: Tensor<2>) -> Tensor<2> {
    (mu.powi_scalar(2) + logvar.clone().exp() - logvar - 1.0).mul_scalar(0.5)
}

/// GAN loss with logits against a constant target (1 real, 0 fake), mean over the batch.
/// Target 1: `-log σ(l)`; target 0: `-log(1 - σ(l)) = l - log σ(l)`.
pub fn bce_logits_const(logits: Tensor<2>, real: bool) -> Tensor<1> {
    let per = if real {
        log_sigmoid(logits).neg()
    } else {
        logits.clone() - log_sigmoid(logits)
    };
    per.mean()
}
