//! The Flight SQL service every data node serves. Stateless: a statement's ticket and a
//! prepared statement's handle are the SQL text itself (or the result of DDL or a script,
//! computed when it was planned), so any data node can answer any of them, and there is
//! nothing to clean up.
//!
//! A statement is a DolphinDB script if `shoal_script::is_script` says so, else Shoal's DDL
//! if `shoal_catalog::ddl` parses it as DDL, else a query for DataFusion. Each one answered is
//! reported to the data node's [`QueryObserver`] (see `crate::observe`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementIngest, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, SqlSupportedTransaction,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use futures::TryStreamExt;
use prost::Message;
use prost::bytes::Bytes;
use tonic::{Request, Response, Status};

use shoal_common::secret::Keys;
use shoal_common::users::{Directory, Role};
use shoal_proto::auth::Principal;
use shoal_script::Answer;

use crate::engine::{QueryEngine, QueryOptions};
use crate::error::is_unavailable;
use crate::ingest::Appender;
use crate::metadata;
use crate::observe::{Answering, ObservedStream, Outcome, QueryObserver, StatementKind};
use crate::params;

type DoGetStream = <ShoalFlightSqlService as FlightService>::DoGetStream;

pub struct ShoalFlightSqlService {
    engine: Arc<QueryEngine>,
    /// Bulk ingest (`CommandStatementIngest`) goes through it: see `crate::ingest`.
    appender: Arc<dyn Appender>,
    login: Login,
    /// This data node's alias: what a script's `version()` answers for.
    node: String,
    observer: Arc<dyn QueryObserver>,
}

/// Who may log in, and the key that signs their tokens (the cluster secret).
pub struct Login {
    pub users: Arc<Directory>,
    pub secret: Keys,
}

impl Login {
    /// Checks basic credentials on a blocking thread: a password hash must not stall the
    /// async workers every query runs on.
    async fn log_in(&self, who: Principal) -> Result<String, Status> {
        let (users, secret) = (self.users.clone(), self.secret.clone());
        tokio::task::spawn_blocking(move || shoal_proto::auth::login(&users, &secret, &who))
            .await
            .map_err(|e| Status::internal(format!("checking the password: {e}")))?
    }
}

type HandshakeStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

/// The gRPC service to mount in a data node's router, behind `shoal_proto::auth::UserAuth`
/// (every call but the login needs a user's token or the cluster secret); `observer` is told
/// of every statement answered.
pub fn flight_service(
    engine: Arc<QueryEngine>,
    appender: Arc<dyn Appender>,
    login: Login,
    node: String,
    observer: Arc<dyn QueryObserver>,
) -> FlightServiceServer<ShoalFlightSqlService> {
    FlightServiceServer::new(ShoalFlightSqlService {
        engine,
        appender,
        login,
        node,
        observer,
    })
}

impl ShoalFlightSqlService {
    /// Plans a query, `?` placeholders numbered (see `crate::params`).
    async fn plan(&self, sql: &str, options: QueryOptions) -> Result<DataFrame, Status> {
        self.engine
            .plan(&params::numbered(sql), options)
            .await
            .map_err(status)
    }

    /// A query's result schema, which no option changes.
    async fn schema_of(&self, sql: &str) -> Result<Schema, Status> {
        let df = self.plan(sql, QueryOptions::default()).await?;
        Ok(df.schema().as_arrow().clone())
    }

    /// A statement's handle (what tickets and prepared statements carry: the SQL text of a
    /// query, or the result of DDL or a script, which runs here, once) with its result schema
    /// and its parameters' schema. DDL and a script's answer are reported answered here, a
    /// query only if it fails here (else its DoGet answers it).
    async fn prepare(&self, who: &Principal, text: &str) -> Result<Prepared, Status> {
        let mut sql = text;
        let translated;
        if shoal_script::is_script(text) {
            let answering = Answering::new(&self.observer, StatementKind::Script);
            match crate::script::run(&self.engine, who, &self.node, text).await {
                Ok(Answer::Rows(batch)) => {
                    return reported(answering, result_prepared(&batch));
                }
                // A select over the cluster's tables: planned and streamed as any query.
                Ok(Answer::Sql(query)) => {
                    answering.dismiss();
                    translated = query;
                    sql = &translated;
                }
                Err(e) => return reported(answering, Err(e)),
            }
        } else if let Some(role) = crate::ddl::needed_role(sql) {
            let answering = Answering::new(&self.observer, StatementKind::Ddl);
            return reported(answering, self.run_ddl(who, role, sql).await);
        }
        let answering = Answering::new(&self.observer, StatementKind::Query);
        match self.plan_query(who, sql).await {
            Ok(prepared) => {
                answering.dismiss();
                Ok(prepared)
            }
            Err(e) => reported(answering, Err(e)),
        }
    }

    async fn run_ddl(&self, who: &Principal, role: Role, sql: &str) -> Result<Prepared, Status> {
        who.require(role)?;
        let (schema, result) = crate::ddl::run(self.engine.controllers(), sql).await?;
        Ok(Prepared {
            handle: result,
            schema: schema.as_ref().clone(),
            params: Schema::empty(),
        })
    }

    async fn plan_query(&self, who: &Principal, sql: &str) -> Result<Prepared, Status> {
        who.require(Role::Reader)?;
        let df = self.plan(sql, QueryOptions::default()).await?;
        Ok(Prepared {
            handle: sql.as_bytes().to_vec(),
            schema: df.schema().as_arrow().clone(),
            params: params::parameter_schema(&df)?,
        })
    }

    /// Streams what a handle stands for: a DDL result as it is (answered when it ran), a
    /// query by running it, reported answered when its stream ends.
    async fn run_handle(
        &self,
        handle: &[u8],
        options: QueryOptions,
    ) -> Result<Response<DoGetStream>, Status> {
        if let Some(result) = crate::ddl::result_of(handle) {
            return Ok(one_batch(result?));
        }
        let answering = Answering::new(&self.observer, StatementKind::Query);
        match self.run_query(handle, options).await {
            Ok(flight) => Ok(Response::new(Box::pin(ObservedStream::new(
                flight, answering,
            )))),
            Err(e) => reported(answering, Err(e)),
        }
    }

    async fn run_query(&self, handle: &[u8], options: QueryOptions) -> Result<DoGetStream, Status> {
        let bound = params::parse(handle)?;
        let mut df = self.plan(&bound.sql, options).await?;
        if !bound.params.is_empty() {
            df = df.with_param_values(bound.params).map_err(status)?;
        }
        let schema = Arc::clone(df.schema().inner());
        let batches = df.execute_stream().await.map_err(status)?;
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches.map_err(|e| FlightError::Tonic(Box::new(status(e)))))
            .map_err(Status::from);
        Ok(Box::pin(flight))
    }
}

/// The call header that turns aggregate pushdown off for one query (`false`); ADBC sets it
/// with the statement option `adbc.flight.sql.rpc.call_header.x-shoal-push-aggregates`.
pub const PUSH_AGGREGATES_HEADER: &str = "x-shoal-push-aggregates";

/// The options a query's call headers choose.
fn options_of<T>(request: &Request<T>) -> QueryOptions {
    let header = request.metadata().get(PUSH_AGGREGATES_HEADER);
    QueryOptions {
        push_aggregates: header.and_then(|v| v.to_str().ok()) != Some("false"),
    }
}

/// A FlightInfo whose one endpoint, on this same server, is `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: Any,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// `result`, reported answered.
fn reported<T>(answering: Answering, result: Result<T, Status>) -> Result<T, Status> {
    answering.report(Outcome::of(&result));
    result
}

/// A statement whose result is `batch`, computed already: the batch is its handle.
fn result_prepared(batch: &RecordBatch) -> Result<Prepared, Status> {
    Ok(Prepared {
        handle: crate::ddl::ticket(batch)?,
        schema: batch.schema().as_ref().clone(),
        params: Schema::empty(),
    })
}

/// A result of one batch, as a DoGet stream.
fn one_batch(batch: RecordBatch) -> Response<DoGetStream> {
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Response::new(Box::pin(flight))
}

/// A prepared statement: its handle, result schema and parameters' schema.
struct Prepared {
    handle: Vec<u8>,
    schema: Schema,
    params: Schema,
}

fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Status::internal(format!("cannot encode a schema: {e}")))?;
    Ok(bytes)
}

/// Unreachable data is `UNAVAILABLE` (another node or a later try may do); anything else is
/// the statement's fault, with DataFusion's message.
fn status(e: DataFusionError) -> Status {
    if is_unavailable(&e) {
        return Status::unavailable(e.to_string());
    }
    match e.find_root() {
        DataFusionError::Internal(_) => Status::internal(e.to_string()),
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(format!(
            "{e} (one query's memory on the node coordinating it is memLimitOfQueryResult in \
             cluster.cfg)"
        )),
        _ => Status::invalid_argument(e.to_string()),
    }
}

/// What GetSqlInfo answers (ADBC drivers ask on connect).
fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Shoal");
    b.append(
        SqlInfo::FlightSqlServerVersion,
        shoal_common::version::version(),
    );
    // The Arrow columnar format version (Schema.fbs MetadataVersion V5).
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    // SQL statements are read-only, but bulk ingest appends.
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.build()
        .map_err(|e| Status::internal(format!("SqlInfo: {e}")))
}

#[tonic::async_trait]
impl FlightSqlService for ShoalFlightSqlService {
    type FlightService = Self;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = self.prepare(&Principal::of(&request), &query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: prepared.handle.into(),
        };
        flight_info(&prepared.schema, ticket.as_any(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        self.run_handle(&ticket.statement_handle, options_of(&request))
            .await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let prepared = self.prepare(&Principal::of(&request), &query.query).await?;
        let parameter_schema = if prepared.params.fields().is_empty() {
            Bytes::new()
        } else {
            ipc_schema(&prepared.params)?
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: prepared.handle.into(),
            dataset_schema: ipc_schema(&prepared.schema)?,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let handle = &cmd.prepared_statement_handle;
        let schema = match crate::ddl::result_of(handle) {
            Some(result) => result?.schema().as_ref().clone(),
            None => self.schema_of(&params::parse(handle)?.sql).await?,
        };
        flight_info(&schema, cmd.as_any(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        self.run_handle(&cmd.prepared_statement_handle, options_of(&request))
            .await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let schema = query.clone().into_builder(&sql_info()?).schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let info = sql_info()?;
        let batch = query
            .into_builder(&info)
            .build()
            .map_err(|e| Status::internal(format!("SqlInfo: {e}")))?;
        Ok(one_batch(batch))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        Ok(one_batch(metadata::catalogs(query).map_err(status)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let batch = metadata::schemas(&self.engine, query)
            .await
            .map_err(status)?;
        Ok(one_batch(batch))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let batch = metadata::tables(&self.engine, query)
            .await
            .map_err(status)?;
        Ok(one_batch(batch))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        Ok(one_batch(metadata::table_types(query).map_err(status)?))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let schema = metadata::xdbc_type_info_schema(query).map_err(status)?;
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Principal::of(&request).require(Role::Reader)?;
        Ok(one_batch(metadata::xdbc_type_info(query).map_err(status)?))
    }

    /// Binds one row of parameter values: answers a new handle carrying the SQL and them.
    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        Principal::of(&request).require(Role::Reader)?;
        let handle = &cmd.prepared_statement_handle;
        if crate::ddl::result_of(handle).is_some() {
            return Err(Status::invalid_argument(
                "a DDL statement or a script takes no parameters",
            ));
        }
        let sql = params::parse(handle)?.sql;
        let values = crate::ingest::collect(request).await?;
        let Some(values) = values else {
            return Err(Status::invalid_argument("no parameter values were sent"));
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(params::bind(&sql, &values)?.into()),
        })
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Principal::of(&request).require(Role::Writer)?;
        crate::ingest::ingest(&self.appender, cmd, request).await
    }

    /// The login: basic credentials in, a signed token out (in the `authorization` response
    /// header, where Flight SQL clients such as ADBC look for it, and in the payload).
    async fn do_handshake(
        &self,
        request: Request<tonic::Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let token = self.login.log_in(Principal::of(&request)).await?;
        let payload = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<HandshakeStream> =
            Response::new(Box::pin(futures::stream::iter([Ok(payload)])));
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token is not header text"))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
