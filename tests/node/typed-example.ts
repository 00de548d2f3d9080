// A typed use of the package: `tsc --noEmit --strict` must accept it (the package's
// index.d.ts is checked against real calls, not just parsed).
import { open, rerank, CairnError, type Database, type Hit, type Job } from 'cairndb';

async function main(): Promise<void> {
  const db: Database = await open({ storage: 'memory' });
  await db.createIndex('docs', { dim: 3, space_type: 'cosine', precision: 'int8' });
  const n: number = await db.upsert('docs', [
    { id: 'a', vector: new Float32Array([1, 0, 0]), meta: { title: 'hi' }, filter: { lang: 'en' } },
    { id: 2, vector: [0, 1, 0] },
  ]);
  const hits: Hit[] = await db.search('docs', { vector: [1, 0, 0], k: 2, filter: [{ lang: { $eq: 'en' } }] });
  const top: string | undefined = hits[0]?.id;
  const job: Job = await db.backup('docs', 'b', { onProgress: ({ done, total }) => void (done / total) });
  const status: 'completed' | 'failed' | string = job.status;
  const bytes: Uint8Array = await db.exportBackup('b');
  await db.createCollection('papers', [
    { name: 'dense', type: 'vector', params: { dimension: 3 } },
    { name: 'terms', type: 'sparse', sparse_model: 'default' },
  ]);
  const papers = db.collection('papers');
  await papers.upsert([{ id: 'p', fields: { dense: [1, 0, 0], terms: { indices: [1], values: [0.5] } } }]);
  const fused = rerank(await papers.search({ fields: { dense: { query: [1, 0, 0], limit: 5 } } }), { limit: 3 });
  try {
    await db.get('docs', 'missing');
  } catch (e) {
    if (e instanceof CairnError) {
      const code: number = e.status;
      void code;
    }
  }
  void [n, top, status, bytes, fused.results.length];
  await db.close();
}

void main();
