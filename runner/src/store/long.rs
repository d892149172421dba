//! Long-format (tidy) tables of the store, for `results export --format long|long-evals`:
//! one row per (job, metric key, step) or per (job, evaluation, step, point), each row carrying
//! the job's identity (id, sweep, label, state size, training length) and every varied key of
//! the jobs' sweeps as columns, so that pandas, DuckDB or R group and plot them directly.
use serde_json::{json, Value};
use stuffed_model::protocol::{JobRecord, EVAL_POINT_COLUMNS};

use super::Db;
use crate::tabular::{Column, ColumnType, RowSink};

/// Which long table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongTable {
    /// One row per job, metric key and step (training loss, learning rate, validation loss, ...).
    Metrics,
    /// One row per job, evaluation, step and point (loss bucket, passkey cell, state
    /// statistic, headline number), evaluations during training included.
    Evals,
}

/// The identity columns that open every row.
const JOB_COLUMNS: [(&str, ColumnType); 5] = [
    ("job", ColumnType::Text),
    ("sweep", ColumnType::Text),
    ("label", ColumnType::Text),
    ("state_size", ColumnType::Int),
    ("train_len", ColumnType::Int),
];

/// The columns after them, per table.
fn table_columns(table: LongTable) -> Vec<Column> {
    match table {
        LongTable::Metrics => {
            vec![Column::new("key", ColumnType::Text), Column::new("step", ColumnType::Int), Column::new("value", ColumnType::Float)]
        }
        LongTable::Evals => {
            let mut c = vec![
                Column::new("eval_index", ColumnType::Int),
                Column::new("kind", ColumnType::Text),
                Column::new("source", ColumnType::Text),
                Column::new("mitigation", ColumnType::Text),
                Column::new("step", ColumnType::Int),
                Column::new("tokens", ColumnType::Int),
                Column::new("final", ColumnType::Bool),
            ];
            c.extend(EVAL_POINT_COLUMNS.iter().map(|&name| {
                let ty = match name {
                    "metric" => ColumnType::Text,
                    "depth" | "value" => ColumnType::Float,
                    _ => ColumnType::Int,
                };
                Column::new(name, ty)
            }));
            c
        }
    }
}

/// The varied keys of `jobs`' sweeps, in first-seen order, each with the column it gets: its
/// own name (`model.d_state`), or `varied.NAME` when a fixed column already has that name.
fn varied_columns(table: LongTable, jobs: &[JobRecord]) -> Vec<(String, Column)> {
    let fixed: Vec<String> =
        JOB_COLUMNS.iter().map(|(n, _)| n.to_string()).chain(table_columns(table).into_iter().map(|c| c.name)).collect();
    let mut keys: Vec<String> = Vec::new();
    for j in jobs {
        for k in j.varied.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys.into_iter()
        .map(|k| {
            let ty = ColumnType::infer(jobs.iter().filter_map(|j| j.varied.get(&k)));
            let name = if fixed.contains(&k) { format!("varied.{k}") } else { k.clone() };
            (k, Column::new(name, ty))
        })
        .collect()
}

/// The columns of a long table of `jobs`, in order.
pub fn long_columns(table: LongTable, jobs: &[JobRecord]) -> Vec<Column> {
    let mut c: Vec<Column> = JOB_COLUMNS.iter().map(|&(n, t)| Column::new(n, t)).collect();
    c.extend(varied_columns(table, jobs).into_iter().map(|(_, col)| col));
    c.extend(table_columns(table));
    c
}

impl Db {
    /// Streams the rows of a long table of `jobs` into `sink` (whose columns are
    /// [`long_columns`]); returns how many rows it wrote.
    pub async fn long_rows(&self, table: LongTable, jobs: &[JobRecord], sink: &mut dyn RowSink) -> anyhow::Result<u64> {
        let varied = varied_columns(table, jobs);
        let mut n = 0u64;
        for j in jobs {
            let mut head = vec![json!(j.id), json!(j.sweep), json!(j.label), json!(j.state_size), json!(j.train_len)];
            head.extend(varied.iter().map(|(k, _)| j.varied.get(k).cloned().unwrap_or(Value::Null)));
            match table {
                LongTable::Metrics => {
                    let rows: Vec<(String, i64, f64)> =
                        sqlx::query_as("SELECT key, step, value FROM metrics WHERE job_id = ? ORDER BY key, step")
                            .bind(&j.id)
                            .fetch_all(&self.pool)
                            .await?;
                    for (key, step, value) in rows {
                        let mut row = head.clone();
                        row.extend([json!(key), json!(step), json!(value)]);
                        sink.write_row(&row)?;
                        n += 1;
                    }
                }
                LongTable::Evals => {
                    let evals = self.eval_history(&j.id).await?;
                    for e in &evals {
                        let last = evals.iter().filter(|o| o.eval_index == e.eval_index).map(|o| o.step).max();
                        let r = &e.result;
                        let mut eval_head = head.clone();
                        eval_head.extend([
                            json!(e.eval_index),
                            json!(r.kind()),
                            json!(r.source()),
                            json!(r.mitigation()),
                            json!(e.step),
                            json!(e.tokens),
                            json!(last == Some(e.step)),
                        ]);
                        for p in r.points() {
                            let mut row = eval_head.clone();
                            row.extend([
                                json!(p.metric),
                                json!(p.bucket_start),
                                json!(p.bucket_end),
                                json!(p.length),
                                json!(p.depth),
                                json!(p.layer),
                                json!(p.head),
                                json!(p.position),
                                json!(p.n),
                                json!(p.value),
                            ]);
                            sink.write_row(&row)?;
                            n += 1;
                        }
                    }
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{read_dump, MAX_DUMP_BYTES};
    use crate::tabular::CsvSink;

    /// The long tables of the version-1 fixture as CSV text.
    async fn fixture_csv(table: LongTable) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump-v1.json");
        let db = Db::open_memory().await.unwrap();
        db.import_checked(&read_dump(&path, MAX_DUMP_BYTES).unwrap(), false).await.unwrap();
        let jobs = db.jobs(&[]).await.unwrap();
        let columns = long_columns(table, &jobs);
        let mut out = Vec::new();
        let mut sink = Box::new(CsvSink::new(&mut out, &columns).unwrap());
        let n = db.long_rows(table, &jobs, sink.as_mut()).await.unwrap();
        sink.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count() as u64, n + 1);
        text
    }

    #[tokio::test]
    async fn metrics_are_one_row_per_job_key_and_step_with_the_varied_keys() {
        let text = fixture_csv(LongTable::Metrics).await;
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), "job,sweep,label,state_size,train_len,model.d_state,train.seq_len,key,step,value");
        assert_eq!(
            lines.next().unwrap(),
            "42974be7a7c5c13d,repro-forget,d_state=8 seq_len=2048,4096,2048,8,2048,loss,50,2.5917868614196777"
        );
        assert!(text.contains(",val_loss,763,"), "{text}");
    }

    #[tokio::test]
    async fn evaluations_are_one_row_per_bucket_cell_statistic_and_headline() {
        let text = fixture_csv(LongTable::Evals).await;
        let header = text.lines().next().unwrap();
        assert_eq!(
            header,
            "job,sweep,label,state_size,train_len,model.d_state,train.seq_len,eval_index,kind,source,mitigation,step,tokens,final,\
             metric,bucket_start,bucket_end,length,depth,layer,head,position,n,value"
        );
        let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        // 64 buckets of 512 positions for each of the two loss evaluations of the first job,
        // 64 of 128 for the second job's; 8 lengths x 5 depths; 1 layer x 2 heads x 7 x 4.
        assert_eq!(count(",true,loss,"), 64 * 2 + 64);
        assert_eq!(count(",mean_loss,"), 3);
        assert_eq!(count(",accuracy,"), 40);
        assert_eq!(count(",states,"), 2 * 7 * 4);
        assert!(text.contains(",passkey,corpus,none,1221,,true,t_recall,,,,,,,,,512.0\n"), "{text}");
        assert!(text.contains(",passkey,corpus,none,1221,,true,accuracy,,,2048,0.5,,,,8,0.5\n"), "{text}");
        assert!(text.contains(",states,corpus,none,763,,true,state_var,,,,,0,1,1024,,"), "{text}");
    }
}
