package pipekit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteSectionKeepsTheOtherSection(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "b.md")
	doc := "# Report\n\ntext\n\n## Graph economy, end-to-end latency and reliability\n\n" + outerMarker + "\n" + placeholder + " old text\n" + outerEnd + "\n"
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(p, "reliability", "R1"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(p, "economy", "E1"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(p, "reliability", "R2"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	got := string(b)
	want := "# Report\n\ntext\n\n## Graph economy, end-to-end latency and reliability\n\n" + outerMarker + "\n" +
		subBegin("economy") + "\nE1\n" + subEnd("economy") + "\n\n" + subBegin("reliability") + "\nR2\n" + subEnd("reliability") +
		"\n\n_detection: not measured yet (`make bench-pipeline`)._\n\n_drives: not measured yet (`make bench-pipeline`)._\n\n_storage: not measured yet (`make reliability`)._\n" + outerEnd + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, placeholder) {
		t.Error("placeholder kept")
	}
}

func TestWriteSectionWithoutBlock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "new.md")
	if err := WriteSection(p, "economy", "E"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !strings.Contains(string(b), outerMarker+"\n"+subBegin("economy")+"\nE\n"+subEnd("economy")) || !strings.HasSuffix(string(b), outerEnd+"\n") {
		t.Errorf("got\n%s", b)
	}
}

func TestWriteSectionPutsDetectionAndDrivesBetween(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.md")
	for _, w := range [][2]string{{"storage", "S"}, {"reliability", "R"}, {"economy", "E"}, {"drives", "V"}, {"detection", "D"}} {
		if err := WriteSection(p, w[0], w[1]); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	want := subBegin("economy") + "\nE\n" + subEnd("economy") + "\n\n" + subBegin("detection") + "\nD\n" + subEnd("detection") + "\n\n" + subBegin("drives") + "\nV\n" + subEnd("drives") + "\n\n" + subBegin("reliability") + "\nR\n" + subEnd("reliability") + "\n\n" + subBegin("storage") + "\nS\n" + subEnd("storage") + "\n" + outerEnd + "\n"
	if !strings.HasSuffix(string(b), want) || strings.Contains(string(b), "not measured yet") {
		t.Errorf("got\n%s", b)
	}
}

func TestWriteSectionOptionalScaleComesLast(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.md")
	for _, w := range [][2]string{{"scale", "S1"}, {"economy", "E"}, {"scale", "S2"}} {
		if err := WriteSection(p, w[0], w[1]); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	got := string(b)
	want := subBegin("scale") + "\nS2\n" + subEnd("scale") + "\n" + outerEnd + "\n"
	if !strings.HasSuffix(got, want) || strings.Contains(got, "scale: not measured") || strings.Count(got, subBegin("scale")) != 1 {
		t.Errorf("got\n%s", got)
	}
}

func TestWriteSectionKeepsOtherToolsBlocks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.md")
	if err := WriteSection(p, "economy", "E"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	doc := strings.Replace(string(b), outerEnd, "<!-- bench-mailboxes:begin -->\nM\n<!-- bench-mailboxes:end -->\n"+outerEnd, 1)
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(p, "scale", "S"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(p)
	got := string(b)
	if strings.Count(got, "<!-- bench-mailboxes:begin -->\nM\n<!-- bench-mailboxes:end -->") != 1 || !strings.Contains(got, subBegin("scale")+"\nS\n") {
		t.Errorf("got\n%s", got)
	}
}
