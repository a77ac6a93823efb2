//! Latent Lab: train VAEs and GANs on images and explore what they learn.
//!
//! The engine (every module but `app`) has no GUI dependency: data, models, training,
//! checkpoints, metrics and the worker thread. `app` is the eframe/egui desktop app,
//! which talks to the engine only through the worker's messages. See `ARCHITECTURE.md`.

pub mod app;
pub mod autosave;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod cpu;
pub mod data;
pub mod error;
pub mod eval;
pub mod explore;
pub mod export;
pub mod fuzzing;
pub mod health;
pub mod images;
pub mod import;
pub mod infer;
pub mod linalg;
pub mod model;
pub mod run;
pub mod score;
pub mod timeline;
pub mod train;
pub mod util;
pub mod worker;
