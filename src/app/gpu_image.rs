//! Single-channel images drawn by `shaders/colormap.wgsl` through an egui_wgpu paint
//! callback: the colour map runs on the GPU and zoom is nearest-neighbour.
//! Opt-in with `LATENT_LAB_SHADER=1` (see ARCHITECTURE.md for why it is not the default);
//! otherwise the CPU colour map in `colormap.rs` and an egui texture draw the same thing.

use std::collections::HashMap;
use std::sync::Arc;

use eframe::egui_wgpu::{self, wgpu};

use super::settings::Colormap;

const SHADER: &str = include_str!("../../shaders/colormap.wgsl");

/// Pipeline and per-image textures, kept in egui_wgpu's callback resources.
pub struct ColormapResources {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    images: HashMap<u64, GpuImage>,
}

struct GpuImage {
    texture: wgpu::Texture,
    params: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    size: [u32; 2],
    version: u64,
    colormap: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    colormap: u32,
    pad: [u32; 3],
}

/// Register the pipeline once; returns false when eframe does not run on wgpu.
pub fn install(cc: &eframe::CreationContext<'_>) -> bool {
    let Some(rs) = cc.wgpu_render_state.as_ref() else {
        return false;
    };
    let device = &rs.device;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("latent-lab colormap"),
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("latent-lab colormap"),
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                count: None,
            },
            wgpu::BindGroupLayoutEntry {
                binding: 1,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            },
        ],
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("latent-lab colormap"),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("latent-lab colormap"),
        layout: Some(&pl),
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs_main"),
            buffers: &[],
            compilation_options: Default::default(),
        },
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs_main"),
            targets: &[Some(rs.target_format.into())],
            compilation_options: Default::default(),
        }),
        primitive: wgpu::PrimitiveState::default(),
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        multiview_mask: None,
        cache: None,
    });
    rs.renderer
        .write()
        .callback_resources
        .insert(ColormapResources {
            pipeline,
            layout,
            images: HashMap::new(),
        });
    true
}

/// One draw of image `id`; `version` changes whenever `pixels` do.
pub struct ColormapCallback {
    pub id: u64,
    pub version: u64,
    pub size: [u32; 2],
    /// Row-major values in [0, 1].
    pub pixels: Arc<Vec<f32>>,
    pub colormap: Colormap,
}

impl egui_wgpu::CallbackTrait for ColormapCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(res) = resources.get_mut::<ColormapResources>() else {
            return Vec::new();
        };
        let cm = match self.colormap {
            Colormap::Gray => 0,
            Colormap::Viridis => 1,
            Colormap::Magma => 2,
        };
        let fresh = res.images.get(&self.id).is_none_or(|g| g.size != self.size);
        if fresh {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("latent-lab image"),
                size: wgpu::Extent3d {
                    width: self.size[0],
                    height: self.size[1],
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::R32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let params = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("latent-lab colormap params"),
                size: std::mem::size_of::<Params>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("latent-lab image"),
                layout: &res.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::TextureView(&view),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: params.as_entire_binding(),
                    },
                ],
            });
            res.images.insert(
                self.id,
                GpuImage {
                    texture,
                    params,
                    bind_group,
                    size: self.size,
                    version: u64::MAX,
                    colormap: u32::MAX,
                },
            );
        }
        let Some(img) = res.images.get_mut(&self.id) else {
            return Vec::new();
        };
        if img.version != self.version
            && self.pixels.len() == (self.size[0] * self.size[1]) as usize
        {
            queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture: &img.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                bytemuck::cast_slice(self.pixels.as_slice()),
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(4 * self.size[0]),
                    rows_per_image: Some(self.size[1]),
                },
                wgpu::Extent3d {
                    width: self.size[0],
                    height: self.size[1],
                    depth_or_array_layers: 1,
                },
            );
            img.version = self.version;
        }
        if img.colormap != cm {
            queue.write_buffer(
                &img.params,
                0,
                bytemuck::bytes_of(&Params {
                    colormap: cm,
                    pad: [0; 3],
                }),
            );
            img.colormap = cm;
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        let Some(res) = resources.get::<ColormapResources>() else {
            return;
        };
        let Some(img) = res.images.get(&self.id) else {
            return;
        };
        pass.set_pipeline(&res.pipeline);
        pass.set_bind_group(0, &img.bind_group, &[]);
        pass.draw(0..6, 0..1);
    }
}
