//! What each installed kernel's initramfs carries: `lsinitramfs` filtered to vfio modules and
//! modprobe configuration, plus vfio built into the kernel.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitramfsInfo {
    pub kernel: String,
    pub mtime: Option<i64>,
    /// vfio-pci is in the image or built into the kernel.
    pub has_vfio_pci: bool,
    /// modprobe.d files in the image, as paths relative to its root.
    pub modprobe_files: Vec<String>,
}

/// One `### pvegpu initramfs <kernel> mtime=<epoch>` section.
pub fn parse(kernel: &str, mtime: Option<i64>, text: &str) -> InitramfsInfo {
    let mut info = InitramfsInfo {
        kernel: kernel.to_string(),
        mtime,
        has_vfio_pci: false,
        modprobe_files: Vec::new(),
    };
    for line in text.lines().map(str::trim) {
        let file = line.rsplit('/').next().unwrap_or(line);
        if file.starts_with("vfio-pci.ko") || file.starts_with("vfio_pci.ko") {
            info.has_vfio_pci = true;
        } else if line.contains("etc/modprobe.d/") && line.ends_with(".conf") {
            info.modprobe_files
                .push(line.trim_start_matches("builtin ").to_string());
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_in_image_or_builtin() {
        let i = parse(
            "6.1.0-50-amd64",
            Some(5),
            "usr/lib/modules/6.1.0-50-amd64/kernel/drivers/vfio/pci/vfio-pci.ko\netc/modprobe.d/pvegpu-vfio.conf\nconf/modules\n",
        );
        assert!(i.has_vfio_pci);
        assert_eq!(i.modprobe_files, vec!["etc/modprobe.d/pvegpu-vfio.conf"]);
        assert!(
            parse(
                "6.8.0",
                None,
                "builtin kernel/drivers/vfio/pci/vfio-pci.ko\n"
            )
            .has_vfio_pci
        );
        assert!(
            !parse(
                "6.8.0",
                None,
                "usr/lib/modules/6.8.0/kernel/drivers/vfio/vfio.ko\n"
            )
            .has_vfio_pci
        );
    }
}
