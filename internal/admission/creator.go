package admission

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/mutate-tokens-apitoken-dev-v1alpha1-apitoken,mutating=true,failurePolicy=fail,sideEffects=None,groups=tokens.apitoken.dev,resources=apitokens,verbs=create;update,versions=v1alpha1,name=mapitoken.apitoken.dev,admissionReviewVersions=v1,timeoutSeconds=5,reinvocationPolicy=Never

// CreatorPath is where the API server sends APITokens to have their creator recorded.
const CreatorPath = "/mutate-tokens-apitoken-dev-v1alpha1-apitoken"

// CreatorRecorder is the mutating webhook that records who created an APIToken: the
// apitoken.dev/created-by annotation is the requesting user on create, and stays what
// it was on every update. Whatever a manifest says there is overwritten, so the
// annotation can be neither forged nor changed: the plugin's list --mine and the
// validator's audit trust it.
type CreatorRecorder struct{}

// SetupWithManager registers the webhook with the manager's webhook server.
func (c *CreatorRecorder) SetupWithManager(mgr manager.Manager) error {
	mgr.GetWebhookServer().Register(CreatorPath, &webhook.Admission{Handler: c})
	return nil
}

// Handle answers one admission request with the patch that puts the annotation right,
// or none when it is right already.
func (c *CreatorRecorder) Handle(_ context.Context, req admission.Request) admission.Response {
	var want string
	switch req.Operation {
	case admissionv1.Create:
		want = req.UserInfo.Username
	case admissionv1.Update:
		old, err := annotationsOf(req.OldObject.Raw)
		if err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		// An APIToken created before creators were recorded keeps having none.
		want = old[tokensv1.CreatedByAnnotation]
	default:
		return admission.Allowed("")
	}
	cur, err := annotationsOf(req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if patch := creatorPatch(cur, want); patch != nil {
		return admission.Patched("", *patch)
	}
	return admission.Allowed("")
}

// creatorPatch is the JSON patch that makes annotations hold want as the creator, ""
// meaning none; nil when they do already.
func creatorPatch(annotations map[string]string, want string) *jsonpatch.JsonPatchOperation {
	got, ok := annotations[tokensv1.CreatedByAnnotation]
	switch {
	case want == "" && !ok:
		return nil
	case want == "":
		return &jsonpatch.JsonPatchOperation{Operation: "remove", Path: annotationPath}
	case ok && got == want:
		return nil
	case annotations == nil:
		return &jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/annotations", Value: map[string]string{tokensv1.CreatedByAnnotation: want}}
	default:
		return &jsonpatch.JsonPatchOperation{Operation: "add", Path: annotationPath, Value: want}
	}
}

// annotationPath is the JSON pointer of the annotation (RFC 6901 writes "/" as "~1").
var annotationPath = "/metadata/annotations/" + strings.ReplaceAll(tokensv1.CreatedByAnnotation, "/", "~1")

// annotationsOf reads the annotations of an object's JSON.
func annotationsOf(raw []byte) (map[string]string, error) {
	var obj metav1.PartialObjectMetadata
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	return obj.Annotations, nil
}
