package localsock

import (
	"fmt"
	"io/fs"

	"golang.org/x/sys/windows"
)

// checkOwner: on Windows the directory's ACL, set by restrict, decides.
func checkOwner(string, fs.FileInfo) error { return nil }

// restrictedDACL grants SYSTEM and Administrators full control and nobody
// else anything, without inheriting ProgramData's grants to Users: the
// equivalent of mode 0700 for a HostProcess agent running as SYSTEM.
const restrictedDACL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

func restrict(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(restrictedDACL)
	if err != nil {
		return fmt.Errorf("local socket directory %s: %w", dir, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("local socket directory %s: %w", dir, err)
	}
	if err := windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		return fmt.Errorf("local socket directory %s: set a SYSTEM/Administrators-only ACL: %w", dir, err)
	}
	return nil
}
