// Draws a single-channel image into the egui paint-callback rectangle with a colour map
// and crisp (nearest-neighbour) zoom. The viewport is set to the callback rectangle by
// egui-wgpu, so a full-viewport quad covers exactly the image area.

struct Params {
    // 0 gray, 1 viridis, 2 magma
    colormap: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
};

@group(0) @binding(0) var image: texture_2d<f32>;
@group(0) @binding(1) var<uniform> params: Params;

struct VsOut {
    @builtin(position) pos: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VsOut {
    // Two triangles covering clip space [-1, 1]².
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(-1.0, -1.0), vec2<f32>(1.0, -1.0), vec2<f32>(1.0, 1.0),
        vec2<f32>(-1.0, -1.0), vec2<f32>(1.0, 1.0), vec2<f32>(-1.0, 1.0),
    );
    let c = corners[i];
    var out: VsOut;
    out.pos = vec4<f32>(c, 0.0, 1.0);
    out.uv = vec2<f32>((c.x + 1.0) * 0.5, (1.0 - c.y) * 0.5);
    return out;
}

fn poly(c0: vec3<f32>, c1: vec3<f32>, c2: vec3<f32>, c3: vec3<f32>, c4: vec3<f32>,
        c5: vec3<f32>, c6: vec3<f32>, t: f32) -> vec3<f32> {
    return c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * (c5 + t * c6)))));
}

// Polynomial fits of matplotlib's viridis and magma (Matt Zucker, CC0); same as src/app/colormap.rs.
fn viridis(t: f32) -> vec3<f32> {
    return poly(
        vec3<f32>(0.2777273272234177, 0.005407344544966578, 0.3340998053353061),
        vec3<f32>(0.1050930431085774, 1.404613529898575, 1.384590162594685),
        vec3<f32>(-0.3308618287255563, 0.214847559468213, 0.09509516302823659),
        vec3<f32>(-4.634230498983486, -5.799100973351585, -19.33244095627987),
        vec3<f32>(6.228269936347081, 14.17993336680509, 56.69055260068105),
        vec3<f32>(4.776384997670288, -13.74514537774601, -65.35303263337234),
        vec3<f32>(-5.435455855934631, 4.645852612178535, 26.3124352495832),
        t);
}

fn magma(t: f32) -> vec3<f32> {
    return poly(
        vec3<f32>(-0.002136485053939582, -0.000749655052795221, -0.005386127855323933),
        vec3<f32>(0.2516605407371642, 0.6775232436837668, 2.494026599312351),
        vec3<f32>(8.353717279216625, -3.577719514958484, 0.3144679030132573),
        vec3<f32>(-27.66873308576866, 14.26473078096533, -13.64921318813922),
        vec3<f32>(52.17613981234068, -27.94360607168351, 12.94416944238394),
        vec3<f32>(-50.76852536473588, 29.04658282127291, 4.23415299384598),
        vec3<f32>(18.65570506591883, -11.48977351997711, -5.601961508734096),
        t);
}

// egui renders into a non-sRGB (linear) target and expects gamma-encoded colours,
// so the colour maps' sRGB values are written as they are.
@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let size = textureDimensions(image);
    // Nearest texel: crisp pixels at any zoom.
    let texel = min(vec2<u32>(in.uv * vec2<f32>(size)), size - vec2<u32>(1u, 1u));
    let t = clamp(textureLoad(image, texel, 0).r, 0.0, 1.0);
    var rgb = vec3<f32>(t, t, t);
    if (params.colormap == 1u) {
        rgb = viridis(t);
    } else if (params.colormap == 2u) {
        rgb = magma(t);
    }
    return vec4<f32>(clamp(rgb, vec3<f32>(0.0), vec3<f32>(1.0)), 1.0);
}
