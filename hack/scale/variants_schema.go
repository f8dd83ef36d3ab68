package main

import (
	"fmt"
	"os"
	"path/filepath"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// schemaVariant is one way of cutting down the APIToken CRD's schema, to see what
// each part of it costs a write.
type schemaVariant string

const (
	// schemaReal is the CRD as controller-gen writes it.
	schemaReal schemaVariant = "real"
	// schemaNoCEL has no x-kubernetes-validations rules.
	schemaNoCEL schemaVariant = "no-cel"
	// schemaNoDesc has no descriptions.
	schemaNoDesc schemaVariant = "no-desc"
	// schemaTypesOnly keeps the structure (types, required, list types, defaults) and
	// drops every check of a value: CEL, patterns, formats, enums, lengths, bounds.
	schemaTypesOnly schemaVariant = "types-only"
	// schemaPreserve makes spec and status objects of unknown fields.
	schemaPreserve schemaVariant = "preserve"
)

// variantGroup is the API group the CRD of v is served under, so that every variant
// lives next to the others in one API server, and none is the operator's own.
func variantGroup(v schemaVariant) string { return string(v) + ".crcost.apitoken.dev" }

// realAPITokenCRD reads the operator's APIToken CRD.
func realAPITokenCRD() (*apiextv1.CustomResourceDefinition, error) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "tokens.apitoken.dev_apitokens.yaml"))
	if err != nil {
		return nil, err
	}
	crd := &apiextv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		return nil, err
	}
	return crd, nil
}

// variantCRD returns a copy of crd, renamed into v's group, with its schema cut down
// as v says.
func variantCRD(crd *apiextv1.CustomResourceDefinition, v schemaVariant) (*apiextv1.CustomResourceDefinition, error) {
	out := crd.DeepCopy()
	out.Spec.Group = variantGroup(v)
	out.Name = out.Spec.Names.Plural + "." + out.Spec.Group
	out.Annotations = nil
	for i := range out.Spec.Versions {
		s := out.Spec.Versions[i].Schema.OpenAPIV3Schema
		switch v {
		case schemaReal:
		case schemaNoCEL:
			walkSchema(s, func(p *apiextv1.JSONSchemaProps) { p.XValidations = nil })
		case schemaNoDesc:
			walkSchema(s, func(p *apiextv1.JSONSchemaProps) { p.Description = "" })
		case schemaTypesOnly:
			walkSchema(s, dropValueChecks)
		case schemaPreserve:
			for _, f := range []string{"spec", "status"} {
				s.Properties[f] = apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}
			}
			s.XValidations = nil
		default:
			return nil, fmt.Errorf("unknown schema variant %q", v)
		}
	}
	return out, nil
}

func dropValueChecks(p *apiextv1.JSONSchemaProps) {
	p.Description = ""
	p.XValidations = nil
	p.Pattern, p.Format = "", ""
	p.Enum = nil
	p.MaxLength, p.MinLength, p.MaxItems, p.MinItems, p.MaxProperties, p.MinProperties = nil, nil, nil, nil, nil, nil
	p.Maximum, p.Minimum, p.MultipleOf = nil, nil, nil
	p.ExclusiveMaximum, p.ExclusiveMinimum = false, false
}

// walkSchema calls fn on s and on every schema under it.
func walkSchema(s *apiextv1.JSONSchemaProps, fn func(*apiextv1.JSONSchemaProps)) {
	if s == nil {
		return
	}
	fn(s)
	for k, p := range s.Properties {
		walkSchema(&p, fn)
		s.Properties[k] = p
	}
	if s.Items != nil {
		walkSchema(s.Items.Schema, fn)
	}
	if s.AdditionalProperties != nil {
		walkSchema(s.AdditionalProperties.Schema, fn)
	}
}
