//! Bottom status bar: frame time, decode latency, step, throughput, backend.

use super::Shared;

pub fn status_ui(ui: &mut egui::Ui, shared: &Shared) {
    ui.horizontal(|ui| {
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
        ui.monospace(format!(
            "frame {} ms (p99 {})",
            ms(shared.frame_ms.last()),
            ms(shared.frame_ms.percentile(99.0))
        ))
        .on_hover_text("CPU time per frame as measured by eframe; p99 over the last 600 frames");
        ui.separator();
        ui.monospace(format!(
            "decode {} ms (p99 {})",
            ms(shared.decode_ms.last()),
            ms(shared.decode_ms.percentile(99.0))
        ))
        .on_hover_text("from a slider change to the decoded pixels, on the CPU copy of the model (the decoder thread's clock); p99 over the last 600 decodes. Drawing them waits for the next frame.");
        ui.separator();
        let run = &shared.run;
        ui.monospace(format!("step {}", run.step));
        if let Some(p) = &run.last_point {
            ui.separator();
            ui.monospace(format!("{:.0} img/s", p.images_per_sec));
        }
        ui.separator();
        ui.label(run.status.label());
        if let Some(info) = &run.info {
            ui.separator();
            ui.label(&info.backend);
        }
    });
}
