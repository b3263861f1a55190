<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Apply;

use Autoheal\Sdk\Config\ConfigStore;
use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Database\SqlDialect;
use Autoheal\Sdk\Log\Logger;
use Autoheal\Sdk\Log\NullLogger;
use Autoheal\Sdk\Operations\Operation;
use Autoheal\Sdk\Operations\OperationKind;

/**
 * Applies operations to the shop: DDL over PDO in the connection's dialect, config through
 * the ConfigStore, notifications through the Notifier.
 *
 * In order, stopping at the first failure, then undoing what was applied, newest first —
 * explicitly, because MySQL's DDL commits itself and cannot be rolled back. The undo stops
 * at its own first failure, so what stays in effect is always the first n operations, the
 * prefix the protocol's `applied_operations` counts. Every undo step looks at the live state
 * before acting, so it can be run again after a crash without doing harm.
 */
final class OperationApplier
{
    private \PDO $pdo;
    private SqlDialect $dialect;
    private ConfigStore $config;
    private Notifier $notifier;
    private Logger $logger;

    public function __construct(\PDO $pdo, ConfigStore $config, ?Notifier $notifier = null, ?Logger $logger = null)
    {
        $this->pdo = $pdo;
        $this->dialect = Database::dialect($pdo);
        $this->config = $config;
        $this->logger = $logger ?? new NullLogger();
        $this->notifier = $notifier ?? new LoggingNotifier($this->logger);
    }

    /** @param list<Operation> $operations */
    public function snapshot(array $operations): Snapshot
    {
        $tables = [];
        $keys = [];
        foreach ($operations as $op) {
            if (in_array($op->kind(), [OperationKind::ADD_COLUMN, OperationKind::DROP_COLUMN], true)) {
                $tables[$op->table()] = true;
            } elseif (in_array($op->kind(), [OperationKind::SET_CONFIG, OperationKind::UNSET_CONFIG], true)) {
                $keys[$op->key()] = true;
            }
        }
        $columns = $this->dialect->columns($this->pdo, array_keys($tables));
        $tableState = [];
        foreach (array_keys($tables) as $table) {
            $tableState[$table] = $columns[$table] ?? null;
        }
        $configState = [];
        foreach (array_keys($keys) as $key) {
            $present = $this->config->has($key);
            $configState[$key] = ['present' => $present, 'value' => $present ? $this->config->get($key) : null];
        }
        return new Snapshot($tableState, $configState);
    }

    /**
     * @param list<Operation> $operations
     * @param callable(int): void|null $progress told how many are in effect after each step
     *        (the journal records it, for a crash mid-way)
     */
    public function apply(array $operations, Snapshot $snapshot, ?callable $progress = null): ApplyOutcome
    {
        $progress = $progress ?? static function (int $n): void {
        };
        foreach ($operations as $i => $op) {
            try {
                $this->applyOne($op);
            } catch (\Throwable $e) {
                $error = 'operation ' . $i . ' (' . $op->describe() . '): ' . self::message($e);
                return $this->undo($operations, $snapshot, $i, $error, $progress);
            }
            $progress($i + 1);
        }
        return ApplyOutcome::succeeded(count($operations));
    }

    /**
     * Undoes an apply that was interrupted (the process stopped) after $recorded operations
     * were journaled as applied; the next one may have taken effect without being recorded.
     *
     * @param list<Operation> $operations
     */
    public function recover(array $operations, Snapshot $snapshot, int $recorded, ?callable $progress = null): ApplyOutcome
    {
        $progress = $progress ?? static function (int $n): void {
        };
        $count = min($recorded, count($operations));
        if ($count < count($operations) && $this->inEffect($operations[$count], $snapshot)) {
            $count++;
        }
        return $this->undo($operations, $snapshot, $count, 'the plugin stopped while applying the command', $progress);
    }

    /**
     * @param list<Operation> $operations
     * @param callable(int): void $progress
     */
    private function undo(array $operations, Snapshot $snapshot, int $count, string $error, callable $progress): ApplyOutcome
    {
        for ($j = $count - 1; $j >= 0; $j--) {
            try {
                $this->undoOne($operations[$j], $snapshot);
            } catch (\Throwable $e) {
                $this->logger->log('error', 'undo failed', ['operation' => $operations[$j]->describe(), 'error' => self::message($e)]);
                return ApplyOutcome::failed($j + 1, $error . '; undoing operation ' . $j . ' failed too: ' . self::message($e));
            }
            $progress($j);
        }
        return ApplyOutcome::failed(0, $error . ($count > 0 ? '; the operations before it were undone' : ''));
    }

    private function applyOne(Operation $op): void
    {
        switch ($op->kind()) {
            case OperationKind::ADD_COLUMN:
                $this->pdo->exec($this->dialect->addColumnSql($op->table(), $op->column(), $op->columnType()));
                return;
            case OperationKind::DROP_COLUMN:
                $this->pdo->exec($this->dialect->dropColumnSql($this->pdo, $op->table(), $op->column()));
                return;
            case OperationKind::SET_CONFIG:
                $this->config->set($op->key(), $op->value());
                return;
            case OperationKind::UNSET_CONFIG:
                $this->config->unset($op->key());
                return;
            case OperationKind::NOTIFY_MERCHANT:
                $this->notifier->notify($op->template(), $op->severity(), $op->message(), $op->data());
                return;
        }
        throw new \LogicException('unknown operation kind ' . $op->kind());
    }

    /** Puts what $op touched back as the snapshot had it, if it is not already. */
    private function undoOne(Operation $op, Snapshot $snapshot): void
    {
        switch ($op->kind()) {
            case OperationKind::ADD_COLUMN:
                if ($this->columnExists($op->table(), $op->column()) && !$snapshot->hasColumn($op->table(), $op->column())) {
                    $this->pdo->exec($this->dialect->dropColumnSql($this->pdo, $op->table(), $op->column()));
                }
                return;
            case OperationKind::DROP_COLUMN:
                if (!$this->columnExists($op->table(), $op->column())) {
                    $type = $snapshot->columnType($op->table(), $op->column());
                    if ($type === null) {
                        throw new \RuntimeException('the type of ' . $op->table() . '.' . $op->column() . ' was not recorded');
                    }
                    // The column comes back, its former values do not.
                    $this->pdo->exec($this->dialect->addColumnSql($op->table(), $op->column(), $type));
                }
                return;
            case OperationKind::SET_CONFIG:
            case OperationKind::UNSET_CONFIG:
                if ($snapshot->hasConfig($op->key())) {
                    $this->config->set($op->key(), $snapshot->configValue($op->key()));
                } else {
                    $this->config->unset($op->key());
                }
                return;
            default:
                return;   // a notification cannot be unsent, and changed no state
        }
    }

    /** Whether $op's effect is there now (for the step a crash may have cut short). */
    private function inEffect(Operation $op, Snapshot $snapshot): bool
    {
        switch ($op->kind()) {
            case OperationKind::ADD_COLUMN:
                return $this->columnExists($op->table(), $op->column()) && !$snapshot->hasColumn($op->table(), $op->column());
            case OperationKind::DROP_COLUMN:
                return !$this->columnExists($op->table(), $op->column()) && $snapshot->hasColumn($op->table(), $op->column());
            case OperationKind::SET_CONFIG:
                return $this->config->get($op->key()) === $op->value()
                    && !($snapshot->hasConfig($op->key()) && $snapshot->configValue($op->key()) === $op->value());
            case OperationKind::UNSET_CONFIG:
                return !$this->config->has($op->key()) && $snapshot->hasConfig($op->key());
            default:
                return false;
        }
    }

    private function columnExists(string $table, string $column): bool
    {
        return isset($this->dialect->columns($this->pdo, [$table])[$table][$column]);
    }

    /** The failure as the ack and the log will show it: the driver's text, no trace. */
    private static function message(\Throwable $e): string
    {
        return $e->getMessage();
    }
}
