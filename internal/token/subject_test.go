package token

import "testing"

func TestSubject(t *testing.T) {
	if got := Subject("team-a", "ci"); got != "apitoken:team-a:ci" {
		t.Errorf("Subject = %q", got)
	}
	for sub, want := range map[string][2]string{
		"apitoken:team-a:ci": {"team-a", "ci"},
		"apitoken:a:b:c":     {"a", "b:c"},
	} {
		ns, name, ok := ParseSubject(sub)
		if !ok || ns != want[0] || name != want[1] {
			t.Errorf("ParseSubject(%q) = %q, %q, %v", sub, ns, name, ok)
		}
	}
	for _, sub := range []string{"", "apitoken:", "apitoken:a", "apitoken::b", "apitoken:a:", "system:serviceaccount:a:b", "APITOKEN:a:b"} {
		if _, _, ok := ParseSubject(sub); ok {
			t.Errorf("ParseSubject(%q) accepted", sub)
		}
	}
}
