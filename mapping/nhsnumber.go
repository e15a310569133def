package mapping

// ValidNHSNumber reports whether s is a well-formed NHS number: exactly ten ASCII digits (no spaces) whose
// last digit is the modulus 11 check digit of the first nine (weights 10 down to 2; a check value of 11 is 0,
// and a check value of 10 makes the number invalid).
func ValidNHSNumber(s string) bool {
	if len(s) != 10 {
		return false
	}
	sum := 0
	for i := range 10 {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		if i < 9 {
			sum += int(c-'0') * (10 - i)
		}
	}
	check := 11 - sum%11
	switch check {
	case 11:
		check = 0
	case 10:
		return false
	}
	return int(s[9]-'0') == check
}
