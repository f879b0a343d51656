package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFuncignorePublishesOnlyTheApp checks .funcignore with git's ignore engine: Core Tools reads the file
// with gitignore rules, so what git leaves untracked-and-not-ignored is what `func azure functionapp publish`
// uploads. Only host.json, the function.json files and the handler binary may go.
func TestFuncignorePublishesOnlyTheApp(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	rules, err := os.ReadFile(".funcignore")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := []string{
		"host.json", "handler", "webhook/function.json", "queueworker/function.json", "renewtimer/function.json",
		"eventhub/function.json", "eventhub/eventhub.go", "richnotify/decrypt.go", "richnotify/testdata/valid.json",
		"main.go", "go.mod", "go.sum", "webhook/webhook.go", "webhook/testdata/x.json", "internal/config/config.go",
		"node_modules/azurite/package.json", "local.settings.json", "README.md", "docs/operations.md",
		"package.json", "Makefile", "e2e/main_test.go", "deploy/deploy.sh", ".ci/run",
	}
	for _, f := range files {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, ".gitignore"), rules, 0o644)
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	git("init", "-q")
	var published []string
	for _, f := range strings.Fields(git("ls-files", "--others", "--exclude-standard")) {
		if f != ".gitignore" {
			published = append(published, f)
		}
	}
	slices.Sort(published)
	want := []string{"eventhub/function.json", "handler", "host.json", "queueworker/function.json", "renewtimer/function.json", "webhook/function.json"}
	if !slices.Equal(published, want) {
		t.Errorf("published %v, want %v", published, want)
	}
}
