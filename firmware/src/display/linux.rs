//! The `/dev/fbN` backend: reads the variable and fixed screen info (FBIOGET_VSCREENINFO /
//! FBIOGET_FSCREENINFO), maps the framebuffer memory, packs pixels with the driver's bitfields and line
//! stride (16, 24 and 32 bpp), and keeps a back buffer that is copied to the mapping by damaged rectangles
//! only. When the virtual height holds two screens, the hidden page is updated and shown by FBIOPAN_DISPLAY
//! (tear-free double buffering). Only the pure parts (packing, page and copy arithmetic) are unit-tested here.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::framebuffer::{
    check_source, convert_into, copy_rect_bytes, Channel, Framebuffer, FramebufferFormat, PixelPacking,
};
use super::{DisplayError, Rect};

const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;
const FBIOPAN_DISPLAY: libc::c_ulong = 0x4606;

/// `struct fb_bitfield` of `<linux/fb.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct FbBitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

/// `struct fb_var_screeninfo` of `<linux/fb.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct FbVarScreeninfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: FbBitfield,
    green: FbBitfield,
    blue: FbBitfield,
    transp: FbBitfield,
    nonstd: u32,
    activate: u32,
    height: u32,
    width: u32,
    accel_flags: u32,
    pixclock: u32,
    left_margin: u32,
    right_margin: u32,
    upper_margin: u32,
    lower_margin: u32,
    hsync_len: u32,
    vsync_len: u32,
    sync: u32,
    vmode: u32,
    rotate: u32,
    colorspace: u32,
    reserved: [u32; 4],
}

/// `struct fb_fix_screeninfo` of `<linux/fb.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct FbFixScreeninfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    type_: u32,
    type_aux: u32,
    visual: u32,
    xpanstep: u16,
    ypanstep: u16,
    ywrapstep: u16,
    line_length: u32,
    mmio_start: libc::c_ulong,
    mmio_len: u32,
    accel: u32,
    capabilities: u16,
    reserved: [u16; 2],
}

/// The geometry derived from the screen info, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    width: u32,
    height: u32,
    stride: usize,
    packing: PixelPacking,
    /// Bytes mapped.
    map_len: usize,
    /// Whether two pages fit and panning is possible.
    double_buffered: bool,
}

/// Validates the driver's description; `Err` holds the reason.
fn geometry(var: &FbVarScreeninfo, fix: &FbFixScreeninfo) -> Result<Geometry, String> {
    let bpp = match var.bits_per_pixel {
        16 => 2,
        24 => 3,
        32 => 4,
        other => return Err(format!("{other} bits per pixel (16, 24 and 32 are supported)")),
    };
    if var.grayscale != 0 || var.nonstd != 0 {
        return Err("grayscale or non-standard pixel format".into());
    }
    let chan = |b: FbBitfield| Channel { offset: b.offset, length: b.length };
    let packing =
        PixelPacking { bytes_per_pixel: bpp, red: chan(var.red), green: chan(var.green), blue: chan(var.blue) };
    if !packing.is_valid() || var.red.msb_right != 0 || var.green.msb_right != 0 || var.blue.msb_right != 0 {
        return Err(format!("unsupported colour bitfields {:?}", (var.red, var.green, var.blue)));
    }
    let (width, height) = (var.xres, var.yres);
    let stride = fix.line_length as usize;
    if width == 0 || height == 0 || stride < width as usize * bpp {
        return Err(format!("bad geometry {width}x{height}, line length {stride}"));
    }
    let page = stride * height as usize;
    let smem = fix.smem_len as usize;
    if smem < page {
        return Err(format!("{smem} bytes of video memory for a {page}-byte screen"));
    }
    let double_buffered = var.yres_virtual >= 2 * height && smem >= 2 * page && fix.ypanstep != 0;
    let map_len = if double_buffered { 2 * page } else { page };
    Ok(Geometry { width, height, stride, packing, map_len, double_buffered })
}

/// The nearest standard format of a packing.
fn nearest_format(p: &PixelPacking) -> FramebufferFormat {
    match p.bytes_per_pixel {
        2 => FramebufferFormat::Rgb565,
        3 => FramebufferFormat::Rgb888,
        _ => FramebufferFormat::Xrgb8888,
    }
}

/// The rectangles the hidden page needs before it is shown: this frame's damage and the previous frame's
/// (the hidden page last received the frame before that).
fn page_damage(current: &[Rect], previous: &[Rect]) -> Vec<Rect> {
    let mut all: Vec<Rect> = Vec::with_capacity(current.len() + previous.len());
    for r in current.iter().chain(previous) {
        if !r.is_empty() && !all.iter().any(|a| a.contains_rect(r)) {
            all.retain(|a| !r.contains_rect(a));
            all.push(*r);
        }
    }
    all
}

/// A Linux framebuffer device, memory-mapped.
#[derive(Debug)]
pub struct LinuxFramebuffer {
    device: PathBuf,
    file: File,
    var: FbVarScreeninfo,
    geometry: Geometry,
    map: *mut u8,
    back: Vec<u8>,
    /// The page shown (0 or 1) when double buffered.
    shown_page: usize,
    previous_damage: Vec<Rect>,
}

// SAFETY: the mapping is owned exclusively by this value (no aliasing pointers leave it), so moving it to
// another thread is sound.
unsafe impl Send for LinuxFramebuffer {}

impl LinuxFramebuffer {
    /// Opens and maps a framebuffer device such as `/dev/fb0`.
    pub fn open(device: impl AsRef<Path>) -> Result<Self, DisplayError> {
        let device = device.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&device)
            .map_err(|source| DisplayError::Open { device: device.clone(), source })?;
        let fd = file.as_raw_fd();
        let mut var = FbVarScreeninfo::default();
        let mut fix = FbFixScreeninfo::default();
        // SAFETY: the ioctls write exactly one struct of the kernel's layout, which these repr(C) mirrors have.
        let ioctl = |request, name, arg: *mut libc::c_void| {
            if unsafe { libc::ioctl(fd, request as _, arg) } < 0 {
                Err(DisplayError::Ioctl {
                    device: device.clone(),
                    request: name,
                    source: std::io::Error::last_os_error(),
                })
            } else {
                Ok(())
            }
        };
        ioctl(FBIOGET_VSCREENINFO, "FBIOGET_VSCREENINFO", (&mut var as *mut FbVarScreeninfo).cast())?;
        ioctl(FBIOGET_FSCREENINFO, "FBIOGET_FSCREENINFO", (&mut fix as *mut FbFixScreeninfo).cast())?;
        let geometry =
            geometry(&var, &fix).map_err(|reason| DisplayError::Unsupported { device: device.clone(), reason })?;
        // SAFETY: a fresh shared read/write mapping of the device; the length was checked against smem_len.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                geometry.map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(DisplayError::Mmap { device, len: geometry.map_len, source: std::io::Error::last_os_error() });
        }
        log::info!(
            "framebuffer {}: {}x{} {} bpp, stride {}, {}",
            device.display(),
            geometry.width,
            geometry.height,
            var.bits_per_pixel,
            geometry.stride,
            if geometry.double_buffered { "double buffered by panning" } else { "single buffer" }
        );
        let shown_page = usize::from(geometry.double_buffered && var.yoffset >= geometry.height);
        Ok(LinuxFramebuffer {
            device,
            file,
            var,
            back: vec![0; geometry.stride * geometry.height as usize],
            geometry,
            map: map.cast(),
            shown_page,
            previous_damage: Vec::new(),
        })
    }

    /// The device path.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Whether updates are shown by panning between two pages.
    pub fn is_double_buffered(&self) -> bool {
        self.geometry.double_buffered
    }

    /// The back buffer: the latest composed screen in the device's format, `stride` bytes per line.
    pub fn back_buffer(&self) -> &[u8] {
        &self.back
    }

    /// Writes the latest composed screen (the back buffer, unpacked with the driver's bitfields) as a PNG.
    pub fn snapshot_png(&self, path: impl AsRef<Path>) -> Result<(), DisplayError> {
        let g = self.geometry;
        let bpp = g.packing.bytes_per_pixel;
        let mut rgb = Vec::with_capacity(g.width as usize * g.height as usize * 3);
        for row in self.back.chunks_exact(g.stride) {
            for px in row[..g.width as usize * bpp].chunks_exact(bpp) {
                let mut word = [0u8; 4];
                word[..bpp].copy_from_slice(px);
                let c = g.packing.unpack(u32::from_le_bytes(word));
                rgb.extend_from_slice(&[(c >> 16) as u8, (c >> 8) as u8, c as u8]);
            }
        }
        super::memory::write_png(path.as_ref(), g.width, g.height, &rgb)
    }

    fn mapping(&mut self) -> &mut [u8] {
        // SAFETY: `map` is a live mapping of `map_len` bytes owned by self, unmapped only in Drop.
        unsafe { std::slice::from_raw_parts_mut(self.map, self.geometry.map_len) }
    }
}

impl Framebuffer for LinuxFramebuffer {
    fn size(&self) -> (u32, u32) {
        (self.geometry.width, self.geometry.height)
    }

    fn format(&self) -> FramebufferFormat {
        nearest_format(&self.geometry.packing)
    }

    fn stride(&self) -> usize {
        self.geometry.stride
    }

    fn write_rect(&mut self, rect: Rect, src: &[u32], src_stride: usize) -> Result<(), DisplayError> {
        let g = self.geometry;
        let clipped = check_source(rect, src, src_stride, g.width, g.height)?;
        if !clipped.is_empty() {
            convert_into(&g.packing, &mut self.back, g.stride, clipped, src, src_stride);
        }
        Ok(())
    }

    fn present(&mut self, damage: &[Rect]) -> Result<(), DisplayError> {
        let g = self.geometry;
        let damage: Vec<Rect> = damage.iter().map(|r| r.clip(g.width, g.height)).filter(|r| !r.is_empty()).collect();
        if !g.double_buffered {
            let back = std::mem::take(&mut self.back);
            let map = self.mapping();
            for r in &damage {
                copy_rect_bytes(&back, g.stride, map, g.stride, *r, g.packing.bytes_per_pixel);
            }
            self.back = back;
            return Ok(());
        }
        let hidden = 1 - self.shown_page;
        let page = g.stride * g.height as usize;
        let rects = page_damage(&damage, &self.previous_damage);
        let back = std::mem::take(&mut self.back);
        {
            let map = self.mapping();
            let target = &mut map[hidden * page..(hidden + 1) * page];
            for r in &rects {
                copy_rect_bytes(&back, g.stride, target, g.stride, *r, g.packing.bytes_per_pixel);
            }
        }
        self.back = back;
        let mut var = self.var;
        var.xoffset = 0;
        var.yoffset = hidden as u32 * g.height;
        // SAFETY: FBIOPAN_DISPLAY reads one fb_var_screeninfo, which `var` is.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), FBIOPAN_DISPLAY as _, &mut var as *mut FbVarScreeninfo) };
        if rc < 0 {
            return Err(DisplayError::Ioctl {
                device: self.device.clone(),
                request: "FBIOPAN_DISPLAY",
                source: std::io::Error::last_os_error(),
            });
        }
        self.shown_page = hidden;
        self.previous_damage = damage;
        Ok(())
    }
}

impl Drop for LinuxFramebuffer {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping created in `open`, exactly once.
        unsafe {
            libc::munmap(self.map.cast(), self.geometry.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf(offset: u32, length: u32) -> FbBitfield {
        FbBitfield { offset, length, msb_right: 0 }
    }

    fn screen(
        bpp: u32,
        rgb: [FbBitfield; 3],
        yres_virtual: u32,
        line: u32,
        smem: u32,
    ) -> (FbVarScreeninfo, FbFixScreeninfo) {
        let var = FbVarScreeninfo {
            xres: 100,
            yres: 50,
            xres_virtual: 100,
            yres_virtual,
            bits_per_pixel: bpp,
            red: rgb[0],
            green: rgb[1],
            blue: rgb[2],
            ..FbVarScreeninfo::default()
        };
        let fix = FbFixScreeninfo { line_length: line, smem_len: smem, ypanstep: 1, ..FbFixScreeninfo::default() };
        (var, fix)
    }

    #[test]
    fn struct_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<FbVarScreeninfo>(), 160);
        let expected_fix = if std::mem::size_of::<libc::c_ulong>() == 8 { 80 } else { 68 };
        assert_eq!(std::mem::size_of::<FbFixScreeninfo>(), expected_fix);
    }

    #[test]
    fn geometry_follows_the_driver() {
        // BGR565 with a padded stride, room for two pages.
        let (var, fix) = screen(16, [bf(0, 5), bf(5, 6), bf(11, 5)], 100, 256, 256 * 100);
        let g = geometry(&var, &fix).unwrap();
        assert_eq!((g.width, g.height, g.stride), (100, 50, 256));
        assert!(g.double_buffered);
        assert_eq!(g.map_len, 2 * 256 * 50);
        assert_eq!(g.packing.pack(0xff0000), 0x001f);
        assert_eq!(g.packing.pack(0x0000ff), 0xf800);
        assert_eq!(nearest_format(&g.packing), FramebufferFormat::Rgb565);
        // 32 bpp with red low (XBGR): no second page without the virtual height.
        let (var, fix) = screen(32, [bf(0, 8), bf(8, 8), bf(16, 8)], 50, 400, 400 * 100);
        let g = geometry(&var, &fix).unwrap();
        assert!(!g.double_buffered);
        assert_eq!(g.map_len, 400 * 50);
        assert_eq!(g.packing.pack(0x112233), 0x332211);
        // 24 bpp RGB.
        let (var, fix) = screen(24, [bf(16, 8), bf(8, 8), bf(0, 8)], 50, 300, 300 * 50);
        assert_eq!(geometry(&var, &fix).unwrap().packing, FramebufferFormat::Rgb888.packing());
        // Refusals name the problem.
        let (var, fix) = screen(8, [bf(0, 3), bf(3, 3), bf(6, 2)], 50, 100, 5000);
        assert!(geometry(&var, &fix).unwrap_err().contains("8 bits"));
        let (var, fix) = screen(32, [bf(16, 8), bf(8, 8), bf(0, 8)], 50, 300, 400 * 50);
        assert!(geometry(&var, &fix).unwrap_err().contains("line length"));
        let (var, fix) = screen(32, [bf(16, 8), bf(8, 8), bf(0, 8)], 50, 400, 100);
        assert!(geometry(&var, &fix).unwrap_err().contains("video memory"));
        let (var, fix) = screen(32, [bf(30, 8), bf(8, 8), bf(0, 8)], 50, 400, 400 * 50);
        assert!(geometry(&var, &fix).unwrap_err().contains("bitfields"));
    }

    #[test]
    fn damage_copies_only_the_rectangles() {
        let (bpp, src_stride, dst_stride) = (2usize, 12usize, 16usize);
        let src: Vec<u8> = (0..(src_stride * 4) as u32).map(|i| i as u8 + 1).collect();
        let mut dst = vec![0u8; dst_stride * 4];
        copy_rect_bytes(&src, src_stride, &mut dst, dst_stride, Rect::new(1, 1, 2, 2), bpp);
        for y in 0..4 {
            for x in 0..8 {
                let d = &dst[y * dst_stride + x * bpp..y * dst_stride + (x + 1) * bpp];
                if (1..3).contains(&x) && (1..3).contains(&y) {
                    assert_eq!(d, &src[y * src_stride + x * bpp..y * src_stride + (x + 1) * bpp]);
                } else {
                    assert_eq!(d, &[0, 0], "({x},{y})");
                }
            }
        }
        // Rows beyond either buffer are skipped, not a panic.
        copy_rect_bytes(&src, src_stride, &mut dst, dst_stride, Rect::new(0, 3, 2, 5), bpp);
    }

    #[test]
    fn hidden_page_gets_this_and_the_previous_damage() {
        let (a, b, big) = (Rect::new(0, 0, 10, 10), Rect::new(50, 0, 10, 10), Rect::new(0, 0, 100, 100));
        assert_eq!(page_damage(&[a], &[b]), vec![a, b]);
        assert_eq!(page_damage(&[a], &[a]), vec![a]);
        assert_eq!(page_damage(&[a, b], &[big]), vec![big]);
        assert_eq!(page_damage(&[], &[Rect::default()]), vec![]);
    }
}
