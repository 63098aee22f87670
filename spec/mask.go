package spec

import "strings"

// MaskPAN keeps the first 6 and last 4 digits of a PAN (PCI DSS); anything shorter than 11
// digits is masked whole.
func MaskPAN(pan string) string {
	if len(pan) < 11 {
		return strings.Repeat("*", len(pan))
	}
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}

// MaskTrack shows only the masked PAN of a track: what precedes the separator.
func MaskTrack(track string) string {
	pan, _, _ := strings.Cut(track, "=")
	return MaskPAN(pan) + "=****"
}
