package plan

import (
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CRDName is the name of the Plan CRD object.
const CRDName = Resource + "." + Group

// CRDObject returns the Plan CRD: namespaced, v1 served and stored, status
// subresource, spec.upgrade (with its image) required, SUC's printer
// columns. The schema spells out every Plan field with SUC's JSON names and
// types; subtrees that are core Kubernetes types (tolerations, env, envFrom,
// securityContext) are kept as objects with unknown fields preserved rather
// than copying the whole core/v1 schema, so the apiserver stores them as
// given and the Job's own validation checks them when the Job is created.
func CRDObject() *apiextv1.CustomResourceDefinition {
	return &apiextv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: CRDName},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: Group,
			Names: apiextv1.CustomResourceDefinitionNames{
				Plural: Resource, Singular: "plan", Kind: Kind, ListKind: Kind + "List",
			},
			Scope: apiextv1.NamespaceScoped,
			Versions: []apiextv1.CustomResourceDefinitionVersion{{
				Name: Version, Served: true, Storage: true,
				Subresources: &apiextv1.CustomResourceSubresources{Status: &apiextv1.CustomResourceSubresourceStatus{}},
				AdditionalPrinterColumns: []apiextv1.CustomResourceColumnDefinition{
					{Name: "Image", Type: "string", JSONPath: ".spec.upgrade.image"},
					{Name: "Channel", Type: "string", JSONPath: ".spec.channel"},
					{Name: "Version", Type: "string", JSONPath: ".spec.version"},
					{Name: "Complete", Type: "string", JSONPath: `.status.conditions[?(@.type=='Complete')].status`},
					{Name: "Message", Type: "string", JSONPath: `.status.conditions[?(@.message!='')].message`},
					{Name: "Applying", Type: "string", JSONPath: ".status.applying", Priority: 10},
				},
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextv1.JSONSchemaProps{
						"apiVersion": str(),
						"kind":       str(),
						"metadata":   {Type: "object"},
						"spec":       specSchema(),
						"status":     statusSchema(),
					},
					Required: []string{"spec"},
				}},
			}},
		},
	}
}

func specSchema() apiextv1.JSONSchemaProps {
	return obj(map[string]apiextv1.JSONSchemaProps{
		"concurrency":           {Type: "integer", Format: "int64", Minimum: ptrF(0)},
		"jobActiveDeadlineSecs": {Type: "integer", Format: "int64"},
		"nodeSelector":          labelSelector(),
		"serviceAccountName":    str(),
		"channel":               str(),
		"version":               str(),
		"secrets": arr(obj(map[string]apiextv1.JSONSchemaProps{
			"name":          str(),
			"path":          str(),
			"ignoreUpdates": boolean(),
			"defaultMode":   {Type: "integer", Format: "int32"},
		}, "name")),
		"tolerations": arr(opaque()),
		"exclusive":   boolean(),
		"window": obj(map[string]apiextv1.JSONSchemaProps{
			"days":      {Type: "array", MinItems: ptrI(1), Items: &apiextv1.JSONSchemaPropsOrArray{Schema: &apiextv1.JSONSchemaProps{Type: "string", Enum: dayEnum()}}},
			"startTime": str(),
			"endTime":   str(),
			"timeZone":  str(),
		}),
		"prepare": containerSchema(),
		"upgrade": containerSchema(),
		"cordon":  boolean(),
		"drain": obj(map[string]apiextv1.JSONSchemaProps{
			"timeout":                  {XIntOrString: true, AnyOf: []apiextv1.JSONSchemaProps{{Type: "integer"}, {Type: "string"}}},
			"gracePeriod":              {Type: "integer", Format: "int32"},
			"deleteLocalData":          boolean(),
			"deleteEmptydirData":       boolean(),
			"ignoreDaemonSets":         boolean(),
			"force":                    boolean(),
			"disableEviction":          boolean(),
			"skipWaitForDeleteTimeout": {Type: "integer"},
			"podSelector":              labelSelector(),
		}),
		"imagePullSecrets":   arr(obj(map[string]apiextv1.JSONSchemaProps{"name": str()})),
		"postCompleteDelay":  str(),
		"priorityClassName":  str(),
		"postCompleteLabels": strMap(),
		"customNodeLabels":   strMap(),
	}, "upgrade")
}

func statusSchema() apiextv1.JSONSchemaProps {
	cond := obj(map[string]apiextv1.JSONSchemaProps{
		"type":               str(),
		"status":             str(),
		"lastUpdateTime":     str(),
		"lastTransitionTime": str(),
		"reason":             str(),
		"message":            str(),
	}, "type", "status")
	conds := arr(cond)
	conds.XListType = ptrS("map")
	conds.XListMapKeys = []string{"type"}
	return obj(map[string]apiextv1.JSONSchemaProps{
		"conditions":    conds,
		"latestVersion": str(),
		"latestHash":    str(),
		"applying":      arr(str()),
	})
}

func containerSchema() apiextv1.JSONSchemaProps {
	return obj(map[string]apiextv1.JSONSchemaProps{
		"image":   str(),
		"command": arr(str()),
		"args":    arr(str()),
		"envs":    arr(opaque()),
		"envFrom": arr(opaque()),
		"volumes": arr(obj(map[string]apiextv1.JSONSchemaProps{
			"name": str(), "source": str(), "destination": str(),
		}, "name", "source", "destination")),
		"securityContext": opaque(),
	}, "image")
}

func labelSelector() apiextv1.JSONSchemaProps {
	return obj(map[string]apiextv1.JSONSchemaProps{
		"matchLabels": strMap(),
		"matchExpressions": arr(obj(map[string]apiextv1.JSONSchemaProps{
			"key":      str(),
			"operator": str(),
			"values":   arr(str()),
		}, "key", "operator")),
	})
}

func dayEnum() []apiextv1.JSON {
	var out []apiextv1.JSON
	for _, d := range []string{"0", "su", "sun", "sunday", "1", "mo", "mon", "monday", "2", "tu", "tue", "tuesday",
		"3", "we", "wed", "wednesday", "4", "th", "thu", "thursday", "5", "fr", "fri", "friday", "6", "sa", "sat", "saturday"} {
		out = append(out, apiextv1.JSON{Raw: []byte(`"` + d + `"`)})
	}
	return out
}

func obj(props map[string]apiextv1.JSONSchemaProps, required ...string) apiextv1.JSONSchemaProps {
	return apiextv1.JSONSchemaProps{Type: "object", Properties: props, Required: required}
}
func arr(item apiextv1.JSONSchemaProps) apiextv1.JSONSchemaProps {
	return apiextv1.JSONSchemaProps{Type: "array", Items: &apiextv1.JSONSchemaPropsOrArray{Schema: &item}}
}
func strMap() apiextv1.JSONSchemaProps {
	s := str()
	return apiextv1.JSONSchemaProps{Type: "object", AdditionalProperties: &apiextv1.JSONSchemaPropsOrBool{Allows: true, Schema: &s}}
}
func opaque() apiextv1.JSONSchemaProps {
	return apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptrB(true)}
}
func str() apiextv1.JSONSchemaProps     { return apiextv1.JSONSchemaProps{Type: "string"} }
func boolean() apiextv1.JSONSchemaProps { return apiextv1.JSONSchemaProps{Type: "boolean"} }
func ptrF(f float64) *float64           { return &f }
func ptrI(i int64) *int64               { return &i }
func ptrS(s string) *string             { return &s }
func ptrB(b bool) *bool                 { return &b }
