/** CairnDB for the browser (Worker + OPFS) and Node (memory or a directory). */

export type SpaceType = 'cosine' | 'l2' | 'ip';
export type Precision = 'float32' | 'float16' | 'int16' | 'int8' | 'binary';

export interface IndexOptions { dim: number; space_type?: SpaceType; M?: number; ef_con?: number; precision?: Precision; sparse_model?: 'None' | 'default' | 'endee_bm25' }
export interface IndexInfo { name: string; dimension: number; space_type: SpaceType; precision: Precision; M: number; ef_con: number; total_elements: number; created_at: number }
/** Endee's filter language: `[{field: {$eq | $in | $range: value}}]`, ANDed. */
export type Filter = Array<Record<string, { $eq?: string | number | boolean; $in?: Array<string | number | boolean>; $range?: [number, number] }>>;
export interface VectorItem { id: string | number; vector: number[] | Float32Array; meta?: unknown; filter?: Record<string, unknown>; norm?: number; sparse_indices?: number[]; sparse_values?: number[] }
export interface Query { vector?: number[] | Float32Array; sparse_indices?: number[]; sparse_values?: number[]; dense_rrf_weight?: number; rrf_rank_constant?: number; k?: number; ef?: number; filter?: Filter; include_vectors?: boolean }
export interface Hit { id: string; similarity: number; meta: unknown; filter: Record<string, unknown>; norm: number; vector?: number[] }
export interface StoredVector { id: string; vector: number[]; meta: unknown; filter: Record<string, unknown>; norm: number; sparse_indices: number[]; sparse_values: number[] }
export type JobStatus = 'queued' | 'running' | 'cancelling' | 'completed' | 'failed' | 'cancelled';
export interface Job {
  job_id: string; kind: 'backup' | 'restore' | 'rebuild'; index_name: string; backup_name: string; status: JobStatus;
  bytes_done: number; bytes_total: number; created_at: number; started_at: number | null; completed_at: number | null;
  error: string | null; archive_size: number | null; archive_sha256: string | null; write_pause_us: number;
  cut: { generation: number; log_len: number; vector_count: number } | null;
  /** A rebuild's graph parameters (its progress, in vectors, is `bytes_done` / `bytes_total`). */
  rebuild?: { m: number; ef_con: number; previous_m: number; previous_ef_con: number; field: number };
  /** A rebuild of several dense fields: each field's parameters, in the order rebuilt. */
  rebuild_plan?: Array<{ m: number; ef_con: number; previous_m: number; previous_ef_con: number; field: number }>;
  /** Fields of `rebuild_plan` rebuilt and committed so far. */
  rebuild_fields_done?: number;
}
export interface Manifest { format: string; version: number; index_name: string; vector_count: number; created_at: number; source: { host: string; version: string }; entries: Array<{ path: string; size: number; sha256: string }> }

/** Thrown for every refused operation; `status` is 400, 404, 409 or 500 as on the server. */
export class CairnError extends Error { status: number }

/** A collection field as Endee's v2 describes it. */
export type FieldSpec =
  | { name: string; type: 'vector'; params: { dimension: number; space_type?: SpaceType; precision?: Precision; M?: number; ef_con?: number } }
  | { name: string; type: 'multi_vector'; params: { dimension: number; space_type?: SpaceType; precision?: 'float32' | 'float16' | 'int16'; pooling: 'mean' | 'max'; M?: number; ef_con?: number } }
  | { name: string; type: 'sparse'; sparse_model: 'default' | 'endee_bm25' };
export interface CollectionInfo { name: string; fields: FieldSpec[]; count: number; created_at: number; layout_version: number }
/** A sparse value: term ids and their weights. */
export interface SparseValue { indices: number[]; values: number[] }
/** A field's value: a vector (`vector`), a list of vectors (`multi_vector`) or a sparse value. */
export type FieldValue = number[] | Float32Array | Array<number[] | Float32Array> | SparseValue;
export interface CollectionObject { id: string; meta?: unknown; filter?: Record<string, unknown>; fields: Record<string, FieldValue> }
export interface FieldHit { id: string; similarity: number; meta: unknown; filter: Record<string, unknown> }
export interface StoredObject {
  id: string; meta: unknown; filter: Record<string, unknown>;
  vectors: Record<string, number[]>; sparses: Record<string, SparseValue>; multi_vectors: Record<string, number[][]>;
}
/** A collection (Endee's v2 model): named `vector`, `multi_vector` and `sparse` fields. */
export interface Collection {
  describe(): Promise<CollectionInfo>;
  /** Every object carries a value for each dense field (the sparse one may be left out). */
  upsert(objects: CollectionObject[]): Promise<{ upserted: number }>;
  /** One ranked list per field; fuse them with `rerank`. */
  search(q: {
    fields: Record<string, { query: FieldValue; limit?: number; ef_search?: number }>;
    filter?: Filter; filter_params?: { prefilter_threshold?: number; boost_percentage?: number }; ef_search?: number;
  }): Promise<{ results: Record<string, FieldHit[]> }>;
  getObjects(ids: string[]): Promise<StoredObject[]>;
  deleteObject(id: string): Promise<{ deleted: string }>;
  deleteByFilter(filter: Filter): Promise<{ deleted: number }>;
  /** Rebuilds the named dense fields' graphs, one after the other, in one job. */
  rebuild(fields: Array<{ field: string; M?: number; ef_con?: number }>, opts?: { onProgress?: (p: { done: number; total: number }) => void }): Promise<Job>;
}
/** Fuses `collection.search` results by weighted reciprocal rank (Endee's `rerank`). */
export function rerank(results: { results: Record<string, FieldHit[]> }, opts?: { limit?: number; fieldWeights?: Record<string, number>; rrfK?: number }): { results: FieldHit[] };

export interface Database {
  /** Creates a collection: `vector` and `multi_vector` fields (none required), at most one `sparse` field. */
  createCollection(name: string, fields: FieldSpec[]): Promise<CollectionInfo>;
  describeCollection(name: string): Promise<CollectionInfo>;
  listCollections(): Promise<CollectionInfo[]>;
  collection(name: string): Collection;
  createIndex(name: string, opts: IndexOptions): Promise<void>;
  listIndexes(): Promise<IndexInfo[]>;
  describe(name: string): Promise<IndexInfo>;
  deleteIndex(name: string): Promise<void>;
  upsert(index: string, items: VectorItem[]): Promise<number>;
  get(index: string, id: string): Promise<StoredVector>;
  delete(index: string, ids: string[]): Promise<number>;
  deleteByFilter(index: string, filter: Filter): Promise<number>;
  search(index: string, query: Query): Promise<Hit[]>;
  /** Runs a backup to its end (a failed or cancelled one rejects). Writes go on meanwhile. */
  backup(index: string, name: string, opts?: { onProgress?: (p: { done: number; total: number }) => void }): Promise<Job>;
  /** Starts a backup and answers at once with the running job; it runs between requests. */
  startBackup(index: string, name: string): Promise<Job>;
  /** Starts a restore into a new index and answers at once with the running job. */
  startRestore(backup: string, target: string): Promise<Job>;
  /** Rebuilds an index's HNSW graph with new `M` / `ef_con` (either may be left out) and resolves with the
   *  finished job; searches and writes go on with the old graph until the new one replaces it. */
  rebuild(index: string, opts?: { M?: number; ef_con?: number; onProgress?: (p: { done: number; total: number }) => void }): Promise<Job>;
  /** Starts a rebuild and answers at once with the running job (one per index; cancel with `cancel`). */
  startRebuild(index: string, M?: number, ef_con?: number): Promise<Job>;
  /** The newest rebuild job of an index, or `null` if it was never rebuilt. */
  rebuildStatus(index: string): Promise<Job | null>;
  /** Dense queries in one call, no JSON: one `{ids, similarities}` per query, best first. */
  searchMany(index: string, queries: Float32Array | ArrayLike<number>[], opts?: { k?: number; ef?: number; filter?: unknown }): Promise<Array<{ ids: string[]; similarities: Float32Array }>>;
  /** Resolves with the job once it has ended: completed, failed or cancelled. */
  waitJob(id: string, opts?: { onProgress?: (p: { done: number; total: number }) => void }): Promise<Job>;
  /** Paces backups to this many MiB a second of reads (0: as fast as storage goes). */
  setBackupRate(mibPerSecond: number): Promise<void>;
  jobs(): Promise<Job[]>;
  job(id: string): Promise<Job>;
  /** Cancels a job: a running one answers `cancelling` and ends `cancelled`, its partial files removed. */
  cancel(id: string): Promise<Job>;
  backups(): Promise<string[]>;
  backupInfo(name: string): Promise<Manifest>;
  exportBackup(name: string): Promise<Uint8Array>;
  exportBackupBlob(name: string): Promise<Blob>;
  importBackup(name: string, data: Uint8Array | Blob): Promise<Manifest>;
  deleteBackup(name: string): Promise<void>;
  /** Runs a restore to its end (a failed or cancelled one rejects). */
  restore(backup: string, target: string, opts?: { onProgress?: (p: { done: number; total: number }) => void }): Promise<Job>;
  checkpoint(index: string): Promise<void>;
  /** What opening recovered or set aside (a damaged index, a jobs file kept aside). */
  recoveryNotes(): Promise<string[]>;
  close(): Promise<void>;
}

export interface OpenOptions { name?: string; storage?: 'opfs' | 'memory' | { dir: string } }
export function open(opts?: OpenOptions): Promise<Database>;
