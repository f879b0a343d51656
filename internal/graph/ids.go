package graph

// IsGUID reports whether s has the form of a directory object id: 32 hex digits in groups of 8-4-4-4-12
// separated by hyphens, in either case. Entra ID gives every user and group such an id; anything else in
// an id position (a UPN, "delta", "$count", a path) is not an object this product may read, and is never
// put into a Graph URL.
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
