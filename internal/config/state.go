package config

import "regexp"

// tableRE is Table storage's rule for table names: 3 to 63 letters and digits, not starting with a digit.
var tableRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,62}$`)

func (l *loader) stateTable() string {
	v := l.get(StateTable)
	if v == "" {
		return DefaultStateTable
	}
	if !tableRE.MatchString(v) {
		l.fail(StateTable, "must be a table name: 3 to 63 letters and digits, not starting with a digit")
		return DefaultStateTable
	}
	return v
}
