//! The traversal grid (the β-VAE paper's figure): one row per latent dimension — a VAE's
//! ordered by KL — or per principal direction, `steps` values in [−r, r] around the
//! explorer's latent; export as PNG (CLI twin: `latent-lab traverse`).

use super::colormap::grid_image;
use super::files::FileAction;
use super::{AppCommand, Panel, Shared};
use crate::explore;
use crate::images::ImageBatch;
use crate::worker::decoder::{Output, Slot};
use crate::worker::RunInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Single latent dimensions (a VAE's by decreasing KL).
    Dims,
    /// The principal directions, ±r standard deviations each.
    Directions,
}

pub struct Traversal {
    pub rows: Rows,
    pub count: usize,
    pub steps: usize,
    pub range: f32,
    /// What was asked last: (latents, class).
    requested: Option<(Vec<f32>, u32)>,
    /// The rows' names of the grid shown (or asked for).
    names: Vec<String>,
    shown_names: Vec<String>,
    pub grid: Option<ImageBatch>,
    grid_cols: usize,
    version: u64,
    shown: u64,
}

impl Default for Traversal {
    fn default() -> Self {
        Self {
            rows: Rows::Dims,
            count: 10,
            steps: 9,
            range: 3.0,
            requested: None,
            names: Vec::new(),
            shown_names: Vec::new(),
            grid: None,
            grid_cols: 9,
            version: 0,
            shown: u64::MAX,
        }
    }
}

impl Panel for Traversal {
    fn id(&self) -> &'static str {
        "traversal"
    }

    fn title(&self) -> &'static str {
        "Traversal"
    }

    fn slots(&self) -> &'static [Slot] {
        &[Slot::Traversal]
    }

    fn on_run_ready(&mut self, _info: &RunInfo, _shared: &mut Shared) {
        self.grid = None;
        self.requested = None;
    }

    fn on_decoded(&mut self, out: Output, shared: &mut Shared) {
        match out {
            Output::Decoded { images, .. } => {
                self.grid = Some(images);
                self.shown_names = self.names.clone();
                self.version += 1;
            }
            Output::Failed { message, .. } => shared.run.errors.push(message),
            Output::Encoded { .. } | Output::Analysed { .. } => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(info) = shared.run.info.as_ref() else {
            ui.label("Train or load a model to draw its traversal grid.");
            return;
        };
        let d = info.spec.latent_dim();
        if shared.latent.z.len() != d {
            shared.latent.z = vec![0.0; d];
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("rows");
            ui.selectable_value(&mut self.rows, Rows::Dims, "latent dimensions");
            ui.selectable_value(&mut self.rows, Rows::Directions, "principal directions");
            let max_rows = match self.rows {
                Rows::Dims => d,
                Rows::Directions => super::analysis::DIRECTIONS.min(d),
            };
            ui.add(egui::Slider::new(&mut self.count, 1..=max_rows.max(1)).text("rows"));
            ui.add(egui::Slider::new(&mut self.steps, 3..=15).text("steps"));
            ui.add(egui::Slider::new(&mut self.range, 0.5..=4.0).text("range ±"));
            let export = self.grid.clone();
            if ui
                .add_enabled(export.is_some(), egui::Button::new("Export PNG…"))
                .clicked()
            {
                if let Some(images) = export {
                    shared.push(AppCommand::ChoosePath(FileAction::ExportGrid {
                        images,
                        cols: self.grid_cols,
                        name: "traversal.png",
                    }));
                }
            }
        });
        shared.class_picker(ui);
        let Some((axes, names, note)) = self.axes(shared, d) else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("computing principal directions…");
            });
            return;
        };
        ui.weak(note);
        let z = explore::traversal(&shared.latent.z, &axes, self.steps, self.range);
        let asked = Some((z.clone(), shared.class));
        if (asked != self.requested || shared.run.new_weights) && shared.decoder.has_model() {
            let job = shared.decode_job(z);
            shared.push(AppCommand::Decoder(Slot::Traversal, job));
            self.requested = asked;
            self.names = names;
            self.grid_cols = self.steps;
        }
        self.grid_ui(ui, shared);
    }
}

impl Traversal {
    /// The rows' axes (already scaled), their names, and a line saying what they are.
    fn axes(
        &mut self,
        shared: &mut Shared,
        d: usize,
    ) -> Option<(Vec<Vec<f32>>, Vec<String>, String)> {
        match self.rows {
            Rows::Dims => {
                let kl: Option<Vec<f64>> = shared
                    .run
                    .last_kl_per_dim()
                    .filter(|kl| kl.len() == d)
                    .map(<[f64]>::to_vec);
                let order = kl
                    .as_deref()
                    .map_or_else(|| (0..d).collect(), explore::dims_by_kl);
                let dims: Vec<usize> = order.into_iter().take(self.count.clamp(1, d)).collect();
                let names = dims
                    .iter()
                    .map(|&i| match &kl {
                        Some(kl) => format!("z{i}  KL {:.2}", kl[i]),
                        None => format!("z{i}"),
                    })
                    .collect();
                let note = format!(
                    "one row per latent dimension{}, ±{:.1} around the explorer's latent",
                    if kl.is_some() {
                        ", by decreasing KL (last test)"
                    } else {
                        ""
                    },
                    self.range
                );
                Some((
                    dims.iter().map(|&i| explore::axis(d, i)).collect(),
                    names,
                    note,
                ))
            }
            Rows::Directions => {
                let c = shared.analysis.want_directions()?;
                let dirs = &c.value;
                let k = self.count.clamp(1, dirs.vectors.len().max(1));
                let axes = dirs
                    .vectors
                    .iter()
                    .zip(&dirs.spread)
                    .take(k)
                    .map(|(v, s)| v.iter().map(|x| x * s).collect())
                    .collect();
                let names = (0..k.min(dirs.vectors.len()))
                    .map(|j| format!("dir {}  {:.1} %", j + 1, dirs.explained[j] * 100.0))
                    .collect();
                let note = format!(
                    "one row per principal direction (step {}), ±{:.1} standard deviations around \
                     the explorer's latent",
                    c.step, self.range
                );
                Some((axes, names, note))
            }
        }
    }

    fn grid_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(grid) = &self.grid else {
            ui.spinner();
            return;
        };
        if self.shown != self.version {
            let img = grid_image(grid, self.grid_cols, shared.settings.colormap);
            let _ = shared.texture(ui.ctx(), "traversal", img);
            self.shown = self.version;
        }
        let Some(t) = shared.cached_texture("traversal") else {
            return;
        };
        let rows = grid.count().div_ceil(self.grid_cols.max(1)).max(1);
        let size = t.size_vec2();
        let label_w = 110.0;
        let avail = ui.available_size() - egui::vec2(label_w, 0.0);
        let scale = (avail.x / size.x).min(avail.y / size.y).max(0.1);
        let shown = size * scale;
        ui.horizontal_top(|ui| {
            let (rect, _) =
                ui.allocate_exact_size(egui::vec2(label_w, shown.y), egui::Sense::hover());
            let row_h = shown.y / rows as f32;
            for (r, name) in self.shown_names.iter().enumerate().take(rows) {
                ui.painter().text(
                    egui::pos2(rect.right() - 6.0, rect.top() + (r as f32 + 0.5) * row_h),
                    egui::Align2::RIGHT_CENTER,
                    name,
                    egui::FontId::proportional(12.0),
                    ui.visuals().text_color(),
                );
            }
            ui.add(egui::Image::new(&t).fit_to_exact_size(shown));
        });
    }
}
