package token

import "strings"

// subjectPrefix starts the sub claim of every token: apitoken:<namespace>:<name>.
const subjectPrefix = "apitoken:"

// Subject is the sub claim of the tokens of APIToken namespace/name.
func Subject(namespace, name string) string { return subjectPrefix + namespace + ":" + name }

// ParseSubject splits a sub claim into the namespace and name of its APIToken. It
// allocates nothing: the results are substrings of sub.
func ParseSubject(sub string) (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(sub, subjectPrefix)
	if !ok {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	return namespace, name, ok && namespace != "" && name != ""
}
