//! [`delegate_ports!`]: a type that wraps an index implements the ports it does not change
//! by delegating to the wrapped one, in one line.

/// Implements the named ports for `$ty` by delegating every method to its field `$inner` (any
/// `Arc<dyn Index>`, or another type implementing those ports). A test double (or a decorator)
/// implements by hand only the port it changes and delegates the others:
///
/// ```text
/// wharf_index::delegate_ports!(StaleFirstLookup => inner:
///     Health, Accounts, Roles, Releases, Uploads, TrustedPublishing, RateLimits, AuditLog);
/// ```
///
/// Lives next to the traits so that a new port method is added here in the same change.
#[macro_export]
macro_rules! delegate_ports {
    ($ty:ty => $inner:ident: $($port:ident),+ $(,)?) => {
        $( $crate::delegate_ports!(@port $ty, $inner, $port); )+
    };
    (@port $ty:ty, $inner:ident, Health) => {
        const _: () = {
            use $crate::__delegate::*;
            #[async_trait]
            impl Health for $ty {
                async fn ping(&self) -> Result<(), IndexError> {
                    self.$inner.ping().await
                }
                fn pool_usage(&self) -> PoolUsage {
                    self.$inner.pool_usage()
                }
            }
        };
    };
    (@port $ty:ty, $inner:ident, Accounts) => {
        const _: () = {
            use $crate::__delegate::*;
            #[async_trait]
            impl Accounts for $ty {
                async fn create_user(&self, name: &str, now_micros: i64) -> Result<User, IndexError> {
                    self.$inner.create_user(name, now_micros).await
                }
                async fn find_user_by_name(&self, name: &str) -> Result<Option<User>, IndexError> {
                    self.$inner.find_user_by_name(name).await
                }
                async fn find_user(&self, id: &str) -> Result<Option<User>, IndexError> {
                    self.$inner.find_user(id).await
                }
                async fn insert_token(&self, token: &NewToken) -> Result<(), IndexError> {
                    self.$inner.insert_token(token).await
                }
                async fn list_root_keys(&self) -> Result<Vec<StoredRootKey>, IndexError> {
                    self.$inner.list_root_keys().await
                }
                async fn store_sealed_root_key(&self, id: &str, sealed: &SealedRootKey) -> Result<bool, IndexError> {
                    self.$inner.store_sealed_root_key(id, sealed).await
                }
                async fn find_token(&self, id: &str) -> Result<Option<TokenRecord>, IndexError> {
                    self.$inner.find_token(id).await
                }
                async fn list_tokens(&self) -> Result<Vec<TokenSummary>, IndexError> {
                    self.$inner.list_tokens().await
                }
                async fn delete_token(&self, id: &str) -> Result<bool, IndexError> {
                    self.$inner.delete_token(id).await
                }
                async fn touch_token(&self, id: &str, now_micros: i64) -> Result<(), IndexError> {
                    self.$inner.touch_token(id, now_micros).await
                }
            }
        };
    };
    (@port $ty:ty, $inner:ident, Projects) => {
        const _: () = {
            use $crate::__delegate::*;
            #[async_trait]
            impl Projects for $ty {
                async fn find_project(&self, normalized_name: &str) -> Result<Option<Project>, IndexError> {
                    self.$inner.find_project(normalized_name).await
                }
                async fn find_projects_by_ultranormalized( &self, ultranormalized_name: &str, ) -> Result<Vec<Project>, IndexError> {
                    self.$inner.find_projects_by_ultranormalized(ultranormalized_name).await
                }
                async fn list_projects(&self) -> Result<Vec<Project>, IndexError> {
                    self.$inner.list_projects().await
                }
                async fn create_project_by_operator( &self, project: &ProjectTarget, owner_id: &str, submitted_by: &str, now_micros: i64, ) -> Result<Option<String>, IndexError> {
                    self.$inner.create_project_by_operator(project, owner_id, submitted_by, now_micros).await
                }
            }
        };
    };
    (@port $ty:ty, $inner:ident, Roles) => {
        const _: () = {
            use $crate::__delegate::*;
            #[async_trait]
            impl Roles for $ty {
                async fn user_role(&self, project_id: &str, user_id: &str) -> Result<Option<String>, IndexError> {
                    self.$inner.user_role(project_id, user_id).await
                }
                async fn project_roles(&self, project_id: &str) -> Result<Vec<(String, String)>, IndexError> {
                    self.$inner.project_roles(project_id).await
                }
            }
        };
    };
    (@port $ty:ty, $inner:ident, Releases) => {
        const _: () = {
            use $crate::__delegate::*;
            #[async_trait]
            impl Releases for $ty {
                async fn max_serial(&self) -> Result<i64, IndexError> {
                    self.$inner.max_serial().await
                }
                async fn project_releases(&self, project_id: &str) -> Result<Vec<Release>, IndexError> {
                    self.$inner.project_releases(project_id).await
                }
                async fn project_files(&self, project_id: &str) -> Result<Vec<FileRecord>, IndexError> {
                    self.$inner.project_files(project_id).await
                }
                async fn set_release_yanked( &self, change: &YankChange<'_>, now_micros: i64, ) -> Result<bool, IndexError> {
                    self.$inner.set_release_yanked(change, now_micros).await
                }
            }
        };
    };
    (@port $ty:ty, $inner:ident, Uploads) => {
        const _: () = {
            use $crate::__delegate::*;
            #[async_trait]
            impl Uploads for $ty {
                async fn find_file_by_upload_id( &self, upload_id: &str, ) -> Result<Option<FileRecord>, IndexError> {
                    self.$inner.find_file_by_upload_id(upload_id).await
                }
                async fn check_file(&self, candidate: &FileCandidate<'_>) -> Result<FileAdmission, IndexError> {
                    self.$inner.check_file(candidate).await
                }
                async fn commit_upload(&self, upload: &NewUpload) -> Result<CommitResult, IndexError> {
                    self.$inner.commit_upload(upload).await
                }
            }
        };
    };
    (@port $ty:ty, $inner:ident, TrustedPublishing) => {
        const _: () = {
            use $crate::__delegate::*;
            #[async_trait]
            impl TrustedPublishing for $ty {
                async fn insert_issuer(&self, issuer: &IssuerRecord) -> Result<(), IndexError> {
                    self.$inner.insert_issuer(issuer).await
                }
                async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, IndexError> {
                    self.$inner.list_issuers().await
                }
                async fn delete_issuer(&self, name: &str) -> Result<bool, IndexError> {
                    self.$inner.delete_issuer(name).await
                }
                async fn insert_publisher(&self, publisher: &NewPublisher) -> Result<(), IndexError> {
                    self.$inner.insert_publisher(publisher).await
                }
                async fn list_publishers(&self) -> Result<Vec<PublisherRecord>, IndexError> {
                    self.$inner.list_publishers().await
                }
                async fn publishers_for_issuer( &self, issuer_url: &str, ) -> Result<Vec<PublisherRecord>, IndexError> {
                    self.$inner.publishers_for_issuer(issuer_url).await
                }
                async fn find_publisher(&self, id: &str) -> Result<Option<PublisherRecord>, IndexError> {
                    self.$inner.find_publisher(id).await
                }
                async fn delete_publisher(&self, id: &str) -> Result<bool, IndexError> {
                    self.$inner.delete_publisher(id).await
                }
                async fn update_publisher_policy( &self, id: &str, policy: &str, label: &str, ) -> Result<(), IndexError> {
                    self.$inner.update_publisher_policy(id, policy, label).await
                }
                async fn reify_pending_publisher( &self, publisher_id: &str, project: &ProjectTarget, now_micros: i64, ) -> Result<ReifyResult, IndexError> {
                    self.$inner.reify_pending_publisher(publisher_id, project, now_micros).await
                }
                async fn claim_jti( &self, issuer_url: &str, jti: &str, expires_at: i64, now: i64, ) -> Result<bool, IndexError> {
                    self.$inner.claim_jti(issuer_url, jti, expires_at, now).await
                }
                async fn record_minted_token( &self, claim: Option<&JtiClaim>, token: &NewToken, audit_kind: &str, audit_detail: &str, now_micros: i64, ) -> Result<bool, IndexError> {
                    self.$inner.record_minted_token(claim, token, audit_kind, audit_detail, now_micros).await
                }
                async fn delete_publisher_token(&self, id: &str) -> Result<bool, IndexError> {
                    self.$inner.delete_publisher_token(id).await
                }
            }
        };
    };
    (@port $ty:ty, $inner:ident, RateLimits) => {
        const _: () = {
            use $crate::__delegate::*;
            #[async_trait]
            impl RateLimits for $ty {
                async fn rate_limit( &self, scope: &str, key: &str, limit: RateLimit, now: i64, ) -> Result<RateVerdict, IndexError> {
                    self.$inner.rate_limit(scope, key, limit, now).await
                }
            }
        };
    };
    (@port $ty:ty, $inner:ident, AuditLog) => {
        const _: () = {
            use $crate::__delegate::*;
            #[async_trait]
            impl AuditLog for $ty {
                async fn record_audit(&self, kind: &str, detail: &str, now_micros: i64) -> Result<(), IndexError> {
                    self.$inner.record_audit(kind, detail, now_micros).await
                }
            }
        };
    };
}
