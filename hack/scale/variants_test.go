package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// count counts the schemas under s, s included, for which has is true.
func count(s *apiextv1.JSONSchemaProps, has func(*apiextv1.JSONSchemaProps) bool) int {
	n := 0
	walkSchema(s, func(p *apiextv1.JSONSchemaProps) {
		if has(p) {
			n++
		}
	})
	return n
}

func TestVariantCRD(t *testing.T) {
	crd, err := realAPITokenCRD()
	if err != nil {
		t.Fatal(err)
	}
	cel := func(p *apiextv1.JSONSchemaProps) bool { return len(p.XValidations) > 0 }
	desc := func(p *apiextv1.JSONSchemaProps) bool { return p.Description != "" }
	pattern := func(p *apiextv1.JSONSchemaProps) bool {
		return p.Pattern != "" || p.Format != "" || len(p.Enum) > 0 || p.MaxLength != nil
	}
	listMap := func(p *apiextv1.JSONSchemaProps) bool { return p.XListType != nil && *p.XListType == "map" }
	realSchema := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	for _, has := range []func(*apiextv1.JSONSchemaProps) bool{cel, desc, pattern, listMap} {
		if count(realSchema, has) == 0 {
			t.Fatal("the real CRD lacks something a variant drops: the test checks nothing")
		}
	}
	for _, tc := range []struct {
		v schemaVariant
		// gone must be found nowhere in the variant, kept as often as in the real CRD.
		gone, kept []func(*apiextv1.JSONSchemaProps) bool
	}{
		{schemaReal, nil, []func(*apiextv1.JSONSchemaProps) bool{cel, desc, pattern, listMap}},
		{schemaNoCEL, []func(*apiextv1.JSONSchemaProps) bool{cel}, []func(*apiextv1.JSONSchemaProps) bool{desc, pattern, listMap}},
		{schemaNoDesc, []func(*apiextv1.JSONSchemaProps) bool{desc}, []func(*apiextv1.JSONSchemaProps) bool{cel, pattern, listMap}},
		{schemaTypesOnly, []func(*apiextv1.JSONSchemaProps) bool{cel, desc, pattern}, []func(*apiextv1.JSONSchemaProps) bool{listMap}},
		{schemaPreserve, []func(*apiextv1.JSONSchemaProps) bool{cel, pattern, listMap}, nil},
	} {
		got, err := variantCRD(crd, tc.v)
		if err != nil {
			t.Fatalf("%s: %v", tc.v, err)
		}
		if got.Spec.Group != variantGroup(tc.v) || got.Name != "apitokens."+variantGroup(tc.v) {
			t.Errorf("%s: group %q, name %q", tc.v, got.Spec.Group, got.Name)
		}
		s := got.Spec.Versions[0].Schema.OpenAPIV3Schema
		for i, has := range tc.gone {
			if n := count(s, has); n != 0 {
				t.Errorf("%s: %d schemas still have what check %d looks for", tc.v, n, i)
			}
		}
		for i, has := range tc.kept {
			if n, want := count(s, has), count(realSchema, has); n != want {
				t.Errorf("%s: check %d finds %d schemas, the real CRD %d", tc.v, i, n, want)
			}
		}
		if tc.v == schemaReal && !reflect.DeepEqual(got.Spec.Versions, crd.Spec.Versions) {
			t.Errorf("the real variant changed the schema")
		}
		if tc.v == schemaPreserve {
			for _, f := range []string{"spec", "status"} {
				p := s.Properties[f]
				if p.XPreserveUnknownFields == nil || !*p.XPreserveUnknownFields || len(p.Properties) != 0 {
					t.Errorf("preserve: %s is %+v", f, p)
				}
			}
		}
	}
	if count(realSchema, cel) == 0 || crd.Spec.Group != "tokens.apitoken.dev" {
		t.Error("variantCRD changed the CRD it was given")
	}
	if _, err := variantCRD(crd, "nonsense"); err == nil {
		t.Error("an unknown variant was accepted")
	}
}

func TestTokenStatus(t *testing.T) {
	for _, tc := range []struct {
		shape            statusShape
		conditions, prev int
		minMsg, maxMsg   int
	}{
		{servedStatus, 3, 1, 30, 200},
		{statusShape{conditions: 4, previous: 3}, 4, 3, 30, 200},
		{statusShape{conditions: 1, longMessages: true}, 1, 0, 1000, 1200},
		{statusShape{}, 0, 0, 0, 0},
	} {
		st := tokenStatus(tc.shape, "c-000001", 7)
		// Through JSON, as the API server gets it.
		raw, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Conditions []struct{ Type, Message string }
			Current    struct{ TokenID string }
			Previous   []struct{ TokenID, RetireAt string } `json:"previousTokens"`
		}
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Conditions) != tc.conditions || len(got.Previous) != tc.prev {
			t.Errorf("%+v: %d conditions, %d previous tokens", tc.shape, len(got.Conditions), len(got.Previous))
		}
		for i, c := range got.Conditions {
			if c.Type != conditionTemplates[i].typ || len(c.Message) < tc.minMsg || len(c.Message) > tc.maxMsg {
				t.Errorf("%+v: condition %d is %s with a message of %d bytes", tc.shape, i, c.Type, len(c.Message))
			}
		}
		if got.Current.TokenID != variantTokenID(7) {
			t.Errorf("%+v: current token %s", tc.shape, got.Current.TokenID)
		}
		for _, p := range got.Previous {
			if p.TokenID == got.Current.TokenID || p.RetireAt == "" {
				t.Errorf("%+v: previous token %+v", tc.shape, p)
			}
		}
		if tc.conditions > 0 && !strings.Contains(got.Conditions[0].Message, variantTokenID(7)) {
			t.Errorf("%+v: Ready does not name the current token: a rotation would not change it", tc.shape)
		}
	}
	if reflect.DeepEqual(tokenStatus(servedStatus, "c", 0), tokenStatus(servedStatus, "c", 1)) {
		t.Error("two generations of a status are the same: the second write would be a no-op")
	}
}

func TestCostVariants(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range costVariants {
		if seen[v.name] {
			t.Errorf("two variants named %q", v.name)
		}
		seen[v.name] = true
		if v.factor != "baseline" && reflect.DeepEqual(variant{schema: v.schema, shape: v.shape, write: v.write, managers: v.managers, watchers: v.watchers},
			variant{schema: baseline.schema, shape: baseline.shape, write: baseline.write, managers: baseline.managers, watchers: baseline.watchers}) {
			t.Errorf("%q measures the baseline again", v.name)
		}
	}
	if costVariants[0].name != baseline.name {
		t.Error("the baseline is not measured first in each round")
	}
}
