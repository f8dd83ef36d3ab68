package exchange

// The exchange's permissions; `make manifests` writes config/rbac/exchange/role.yaml.
// It authenticates tokens from informers on APITokens and ClusterTokenIssuers, as the
// validator does, and writes nothing: no status (usage is the validator's to report),
// no object per exchange. The one Secret it reads is an issuer's key Secret, by name
// (Keys.Current: a get, never a list or a watch), so a namespaced Role can name each
// Secret it may read. The marker names the default issuer's (keystore.SecretName
// "default") in the namespace of config/; the Helm chart names one per entry of its
// exchange.issuers value, in the release namespace.
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens;clustertokenissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=apitoken-system,resources=secrets,resourceNames=apitoken-issuer-default-keys,verbs=get
