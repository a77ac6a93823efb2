//! Test-set metrics of a frozen model, through its family's objective.
//!
//! VAE: negative ELBO in nats (mean over images; one reparameterised sample per image),
//! its reconstruction and KL parts, KL per latent dimension, active units
//! (Burda et al.: variance over the test set of the encoder mean > 0.01) and the
//! importance-weighted bound on −log p(x) with K samples (IWAE, Burda et al. 2016).
//! GAN: discriminator and generator losses, mean D(x) and mean D(G(z)).

use crate::data::Dataset;
use crate::error::TrainError;
use crate::infer::Inference;

pub use crate::model::gan_objective::eval_gan;
pub use crate::model::vae_objective::eval_vae;
pub use crate::run::{EvalReport, GanReport, VaeReport};

/// Test metrics of a frozen model on images `idx` of `data`.
pub fn evaluate(
    inf: &Inference,
    data: &Dataset,
    idx: &[usize],
    iw_samples: usize,
) -> Result<EvalReport, TrainError> {
    inf.networks().evaluate(data, idx, iw_samples, inf.device())
}
