//! Scatter of the encoded test set (posterior means) coloured by label: two raw dimensions,
//! or a projection of all of them (PCA, t-SNE; computed on a projection thread of its own, cached per
//! snapshot). Hovering shows the test image; a click explores its latent or sets an
//! interpolation endpoint; a dragged box selects groups A and B for attribute vectors.

use egui_plot::{Legend, Plot, PlotPoint, PlotPoints, Points, Polygon};

use super::{explorer, AppCommand, Panel, Shared};
use crate::explore::Projection;
use crate::images::label_rgb;
use crate::worker::RunInfo;

/// What the axes show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Two latent dimensions.
    Dims,
    Projected(Projection),
}

/// What a click on a point does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClickMode {
    /// Move the explorer's latent there and show the explorer.
    Explore,
    /// Two clicks: the interpolation's start and end.
    Endpoints,
}

/// What dragging does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DragMode {
    Pan,
    /// A box adds the points inside it to group A (0) or B (1).
    Select(usize),
}

pub struct Scatter {
    pub dim_x: usize,
    pub dim_y: usize,
    /// The user picked the axes; stop choosing them from the KL.
    axes_chosen: bool,
    pub view: View,
    pub click: ClickMode,
    pub drag: DragMode,
    /// The first endpoint of [`ClickMode::Endpoints`].
    first_end: Option<usize>,
    /// Where a selection box started (plot coordinates).
    box_start: Option<PlotPoint>,
    hover_shown: Option<usize>,
    /// `view` was taken from the settings (the axes used last).
    view_restored: bool,
    /// Where the plot was drawn last frame, and how many test images it showed (tests click
    /// on points).
    pub plot_transform: Option<egui_plot::PlotTransform>,
    pub points_drawn: usize,
}

impl Default for Scatter {
    fn default() -> Self {
        Self {
            dim_x: 0,
            dim_y: 1,
            axes_chosen: false,
            view: View::Dims,
            click: ClickMode::Explore,
            drag: DragMode::Pan,
            first_end: None,
            box_start: None,
            hover_shown: None,
            view_restored: false,
            plot_transform: None,
            points_drawn: 0,
        }
    }
}

fn label_color(i: usize) -> egui::Color32 {
    let [r, g, b] = label_rgb(i);
    egui::Color32::from_rgb(r, g, b)
}

impl Panel for Scatter {
    fn id(&self) -> &'static str {
        "scatter"
    }

    fn title(&self) -> &'static str {
        "Scatter"
    }

    fn on_run_ready(&mut self, _info: &RunInfo, _shared: &mut Shared) {
        self.dim_y = 1;
        self.axes_chosen = false;
        self.first_end = None;
        self.box_start = None;
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(info) = shared.run.info.as_ref() else {
            ui.label("Train or load a VAE to see its encoded test set.");
            return;
        };
        if !info.spec.has_encoder() {
            ui.label(
                "The scatter shows encoded test images: it needs a VAE (a GAN has no encoder).",
            );
            return;
        }
        self.controls_ui(ui, shared);
        let Some(points) = self.points(ui, shared) else {
            return;
        };
        if let Some(i) = self.plot_ui(ui, shared, &points) {
            self.clicked(i, shared);
        }
    }
}

impl Scatter {
    fn controls_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let d = shared.run.info.as_ref().map_or(2, |i| i.spec.latent_dim());
        if !self.view_restored {
            self.view_restored = true;
            self.view = shared
                .settings
                .scatter_projection
                .map_or(View::Dims, View::Projected);
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("axes");
            let before = self.view;
            ui.selectable_value(&mut self.view, View::Dims, "two dimensions");
            for m in Projection::ALL {
                ui.selectable_value(&mut self.view, View::Projected(m), m.title());
            }
            if self.view != before {
                shared.settings.scatter_projection = match self.view {
                    View::Dims => None,
                    View::Projected(m) => Some(m),
                };
            }
            if self.view == View::Dims && d >= 2 {
                let before = (self.dim_x, self.dim_y);
                let l = ui.label("x: z");
                ui.add(egui::DragValue::new(&mut self.dim_x).range(0..=d - 1))
                    .labelled_by(l.id);
                let l = ui.label("y: z");
                ui.add(egui::DragValue::new(&mut self.dim_y).range(0..=d - 1))
                    .labelled_by(l.id);
                if (self.dim_x, self.dim_y) != before {
                    self.axes_chosen = true;
                }
            }
            ui.separator();
            ui.label("click");
            ui.selectable_value(&mut self.click, ClickMode::Explore, "explores");
            ui.selectable_value(
                &mut self.click,
                ClickMode::Endpoints,
                "sets interpolation ends",
            );
            ui.separator();
            ui.label("drag");
            ui.selectable_value(&mut self.drag, DragMode::Pan, "pans");
            ui.selectable_value(&mut self.drag, DragMode::Select(0), "selects A");
            ui.selectable_value(&mut self.drag, DragMode::Select(1), "selects B");
            let (a, b) = (shared.groups[0].len(), shared.groups[1].len());
            if a + b > 0 {
                ui.weak(format!("A: {a}, B: {b}"));
                if ui.small_button("clear").clicked() {
                    shared.groups = Default::default();
                }
            }
        });
    }

    /// The 2-D coordinates of every test image in the current view, or `None` (with a
    /// spinner or progress) while they are computed.
    fn points(&mut self, ui: &mut egui::Ui, shared: &mut Shared) -> Option<Vec<[f32; 2]>> {
        let info = shared.run.info.as_ref()?;
        let d = info.spec.latent_dim();
        let n = info.test_preview.count();
        let kl: Option<Vec<f64>> = shared.run.last_kl_per_dim().map(<[f64]>::to_vec);
        match self.view {
            View::Dims => {
                // Until the user picks axes, show the two dimensions that carry the most
                // information.
                if let (false, Some(kl)) = (self.axes_chosen, &kl) {
                    if let [a, b, ..] = crate::explore::dims_by_kl(kl)[..] {
                        (self.dim_x, self.dim_y) = (a, b);
                    }
                }
                let Some(enc) = shared.analysis.want_encoded() else {
                    ui.spinner();
                    return None;
                };
                let e = enc.value.clone();
                if e.n != n || e.d != d {
                    ui.spinner();
                    return None;
                }
                let (dx, dy) = (self.dim_x.min(d - 1), self.dim_y.min(d - 1));
                ui.weak(format!(
                    "{n} test images, encoder means of z{dx} and z{dy}{}; hover for the image",
                    if !self.axes_chosen && kl.is_some() {
                        " (the two highest-KL dimensions)"
                    } else {
                        ""
                    }
                ));
                Some((0..n).map(|i| [e.row(i)[dx], e.row(i)[dy]]).collect())
            }
            View::Projected(m) => {
                let progress = shared.analysis.projecting(m);
                let have = shared.analysis.want_projection(m).cloned();
                let newest = shared.analysis.encoded().map_or(0, |e| e.step);
                ui.horizontal(|ui| {
                    match &have {
                        Some(p) => {
                            ui.weak(format!(
                                "{} of all {d} dimensions of {n} encoded test images, weights of \
                                 step {} ({:.1} s)",
                                m.title(),
                                p.step,
                                p.seconds
                            ));
                        }
                        None => {
                            ui.weak(format!("computing the {} projection…", m.name()));
                        }
                    }
                    if let Some(f) = progress {
                        ui.add(
                            egui::ProgressBar::new(f)
                                .desired_width(160.0)
                                .show_percentage(),
                        );
                    } else if m == Projection::Tsne
                        && have.as_ref().is_some_and(|p| p.step < newest)
                        && ui.button("Recompute with the newest weights").clicked()
                    {
                        shared.analysis.refresh_projection();
                    }
                });
                let p = have?;
                (p.value.len() == n).then(|| p.value.to_vec())
            }
        }
    }

    /// Draw; returns the index of a clicked point.
    fn plot_ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        points: &[[f32; 2]],
    ) -> Option<usize> {
        let info = shared.run.info.as_ref()?;
        let labels = info.test_preview_labels.clone();
        let names = info.label_names.clone();
        let n = points.len();
        let (x_label, y_label) = match self.view {
            View::Dims => (format!("z{}", self.dim_x), format!("z{}", self.dim_y)),
            View::Projected(Projection::Pca) => ("PC 1".into(), "PC 2".into()),
            View::Projected(Projection::Tsne) => ("t-SNE 1".into(), "t-SNE 2".into()),
        };
        let selecting = matches!(self.drag, DragMode::Select(_));
        let mut clicked = None;
        let mut hovered = None;
        let mut finished_box = None;
        let groups = shared.groups.clone();
        let ends: Vec<usize> = self.first_end.into_iter().collect();
        let shown = Plot::new("scatter")
            .legend(Legend::default())
            .data_aspect(1.0)
            .allow_drag(!selecting)
            .allow_boxed_zoom(!selecting)
            .x_axis_label(x_label)
            .y_axis_label(y_label)
            .show(ui, |p| {
                let classes = if labels.is_empty() {
                    1
                } else {
                    names.len().max(1)
                };
                for g in 0..classes {
                    let pts: Vec<[f64; 2]> = (0..n)
                        .filter(|&i| labels.is_empty() || labels[i] as usize == g)
                        .map(|i| [points[i][0] as f64, points[i][1] as f64])
                        .collect();
                    let name = names
                        .get(g)
                        .cloned()
                        .unwrap_or_else(|| "test images".into());
                    p.points(
                        Points::new(name, PlotPoints::from(pts))
                            .radius(2.0)
                            .color(label_color(g)),
                    );
                }
                for (gi, (name, group)) in [("group A", &groups[0]), ("group B", &groups[1])]
                    .into_iter()
                    .enumerate()
                {
                    let pts: Vec<[f64; 2]> = group
                        .iter()
                        .filter(|&&i| i < n)
                        .map(|&i| [points[i][0] as f64, points[i][1] as f64])
                        .collect();
                    if !pts.is_empty() {
                        p.points(
                            Points::new(name, PlotPoints::from(pts))
                                .radius(4.0)
                                .filled(false)
                                .color(if gi == 0 {
                                    egui::Color32::BLACK
                                } else {
                                    egui::Color32::from_rgb(200, 0, 200)
                                }),
                        );
                    }
                }
                if !ends.is_empty() {
                    let pts: Vec<[f64; 2]> = ends
                        .iter()
                        .map(|&i| [points[i][0] as f64, points[i][1] as f64])
                        .collect();
                    p.points(
                        Points::new("interpolation start", PlotPoints::from(pts))
                            .radius(6.0)
                            .shape(egui_plot::MarkerShape::Diamond)
                            .color(egui::Color32::RED),
                    );
                }
                // The nearest point to the pointer, within a few pixels on screen.
                let nearest = |p: &egui_plot::PlotUi<'_>, at: egui::Pos2| {
                    (0..n)
                        .map(|i| {
                            let s = p.screen_from_plot(PlotPoint::new(points[i][0], points[i][1]));
                            (i, s.distance_sq(at))
                        })
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .filter(|(_, d2)| *d2 <= 64.0)
                        .map(|(i, _)| i)
                };
                let pointer = p.response().hover_pos();
                if let Some(at) = pointer {
                    hovered = nearest(p, at);
                }
                if selecting {
                    let r = p.response().clone();
                    if r.drag_started() {
                        self.box_start = p.pointer_coordinate();
                    }
                    if let (Some(a), Some(b)) = (self.box_start, p.pointer_coordinate()) {
                        let corners = vec![[a.x, a.y], [b.x, a.y], [b.x, b.y], [a.x, b.y]];
                        p.polygon(Polygon::new("selection", PlotPoints::from(corners)));
                        if r.drag_stopped() {
                            finished_box = Some((a, b));
                            self.box_start = None;
                        }
                    }
                    if !r.dragged() && !r.drag_stopped() {
                        self.box_start = None;
                    }
                }
                if p.response().clicked() {
                    if let Some(at) = p.response().interact_pointer_pos() {
                        clicked = nearest(p, at);
                    }
                }
            });
        self.plot_transform = Some(shown.transform);
        self.points_drawn = n;
        if let (Some((a, b)), DragMode::Select(g)) = (finished_box, self.drag) {
            let (x0, x1) = (a.x.min(b.x), a.x.max(b.x));
            let (y0, y1) = (a.y.min(b.y), a.y.max(b.y));
            let inside = (0..n).filter(|&i| {
                let (x, y) = (points[i][0] as f64, points[i][1] as f64);
                x >= x0 && x <= x1 && y >= y0 && y <= y1
            });
            let group = &mut shared.groups[g];
            for i in inside {
                if !group.contains(&i) {
                    group.push(i);
                }
            }
        }
        self.hover_ui(ui, shared, hovered);
        clicked
    }

    /// The hovered test image beside the pointer.
    fn hover_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, hovered: Option<usize>) {
        let Some(i) = hovered else {
            return;
        };
        let Some(info) = shared.run.info.as_ref() else {
            return;
        };
        let label = info
            .test_preview_labels
            .get(i)
            .map(|&l| shared.class_name(l));
        if self.hover_shown != Some(i) {
            let img =
                super::colormap::to_color_image(&info.test_preview, i, shared.settings.colormap);
            let _ = shared.texture(ui.ctx(), "scatter-hover", img);
            self.hover_shown = Some(i);
        }
        let Some(t) = shared.cached_texture("scatter-hover") else {
            return;
        };
        egui::Tooltip::always_open(
            ui.ctx().clone(),
            ui.layer_id(),
            ui.scope_id().with("scatter-hover"),
            egui::PopupAnchor::Pointer,
        )
        .show(|ui| {
            ui.add(egui::Image::new(&t).fit_to_exact_size(egui::vec2(84.0, 84.0)));
            ui.label(match label {
                Some(l) => format!("test image {i}: {l}"),
                None => format!("test image {i}"),
            });
        });
    }

    fn clicked(&mut self, i: usize, shared: &mut Shared) {
        match self.click {
            ClickMode::Explore => {
                let Some(enc) = shared.analysis.encoded() else {
                    return;
                };
                if i < enc.value.n {
                    let z = enc.value.row(i).to_vec();
                    shared.latent.set(z);
                    shared.latent.source = Some(format!("test image {i} (scatter)"));
                    shared.push(AppCommand::ShowTab(explorer::ID));
                }
            }
            ClickMode::Endpoints => match self.first_end.take() {
                None => self.first_end = Some(i),
                Some(a) => {
                    shared.interpolation_ends = Some([a, i]);
                    shared.push(AppCommand::ShowTab("interpolation"));
                }
            },
        }
    }
}
