package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Target is an S3 bucket the appliance may restore snapshots to: the
// console command "restore SNAPSHOT TARGET" names it. Its s3 block is a
// source's (endpoint, bucket, prefix, region, access_key, secret_key, tls,
// ca_bundle), except that the prefix is prepended to every restored key,
// check_etag_md5 does not apply, and the credentials need write rights to
// the bucket (s3:PutObject, and the multipart calls for large objects).
type Target struct {
	Name string
	S3   S3
}

// Target returns the target called name.
func (f *File) Target(name string) (Target, bool) {
	for _, t := range f.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return Target{}, false
}

// TargetNamed returns the target block called name, or an error that names
// the targets the config has.
func (f *File) TargetNamed(name string) (Target, error) {
	if t, ok := f.Target(name); ok {
		return t, nil
	}
	if len(f.Targets) == 0 {
		return Target{}, fmt.Errorf("no target %q: the config has no target blocks (docs/config.md)", name)
	}
	names := make([]string, 0, len(f.Targets))
	for _, t := range f.Targets {
		names = append(names, t.Name)
	}
	return Target{}, fmt.Errorf("no target %q in the config (targets: %s)", name, strings.Join(names, ", "))
}

type targetHCL struct {
	Name     string    `hcl:"name,label"`
	S3       *s3HCL    `hcl:"s3,block"`
	DefRange hcl.Range `hcl:",def_range"`
	Body     hcl.Body  `hcl:",body"`
}

// targets checks the target blocks: names well formed and unique, each
// with a valid s3 block.
func (v *validator) targets(raw []targetHCL) []Target {
	var out []Target
	seen := map[string]hcl.Range{}
	for i := range raw {
		rt := &raw[i]
		if prev, dup := seen[rt.Name]; dup {
			v.diags = append(v.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Duplicate target",
				Detail:  fmt.Sprintf("target %q is already defined at %s", rt.Name, prev),
				Subject: rt.DefRange.Ptr(),
			})
			continue
		}
		seen[rt.Name] = rt.DefRange
		out = append(out, v.target(rt))
	}
	return out
}

func (v *validator) target(rt *targetHCL) Target {
	t := Target{Name: rt.Name}
	if !v.checkNamedS3Block("target", rt.Name, rt.DefRange, rt.S3 != nil) {
		return t
	}
	owner := fmt.Sprintf("target %q", rt.Name)
	t.S3 = v.s3(owner, rt.S3)
	if rt.S3.CheckETagMD5 != nil {
		v.errf(rt.S3.Body, "check_etag_md5", `Invalid field "check_etag_md5"`,
			"%s: check_etag_md5 applies to sources (what a pull reads), not to restore targets; remove it", owner)
	}
	// The restore writes with the SHA-256 of every body in the signed
	// request; the MD5 check is a pull's.
	t.S3.CheckETagMD5 = false
	return t
}

// checkNamedS3Block checks what source and target blocks share: a
// well-formed name and an s3 block. It reports whether the s3 block is
// there.
func (v *validator) checkNamedS3Block(kind, name string, def hcl.Range, hasS3 bool) bool {
	if !sourceNameRE.MatchString(name) {
		v.diags = append(v.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Invalid " + kind + " name",
			Detail:  fmt.Sprintf("%s name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", kind, name),
			Subject: def.Ptr(),
		})
	}
	if !hasS3 {
		v.diags = append(v.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: `Missing "s3" block`,
			Detail:  fmt.Sprintf("%s %q needs an s3 { endpoint, bucket, access_key, secret_key } block", kind, name),
			Subject: def.Ptr(),
		})
	}
	return hasS3
}
