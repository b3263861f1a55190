<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Apply;

use Autoheal\Sdk\Apply\CallbackNotifier;
use Autoheal\Sdk\Apply\OperationApplier;
use Autoheal\Sdk\Config\PdoConfigStore;
use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Operations\Operation;
use Autoheal\Sdk\Operations\OperationValidator;
use PHPUnit\Framework\TestCase;

/** OperationApplier on a real database (SQLite and MariaDB run the same cases). */
abstract class ApplierContract extends TestCase
{
    abstract protected function pdo(): \PDO;

    /** A column type this database refuses to add (so an apply fails half-way). */
    abstract protected function typeTheDatabaseRefuses(): string;

    /** @var list<array{string, string, string, array<string, scalar|null>}> */
    protected array $notices = [];
    /** @var callable|null */
    protected $onNotify = null;

    protected function createShopTables(): void
    {
        $pdo = $this->pdo();
        $pdo->exec('CREATE TABLE wp_molam_orders (id BIGINT UNSIGNED, amount DECIMAL(10,2))');
        $pdo->exec("INSERT INTO wp_molam_orders (id, amount) VALUES (1, 12.50)");
    }

    protected function applier(): OperationApplier
    {
        return new OperationApplier($this->pdo(), new PdoConfigStore($this->pdo()), new CallbackNotifier(function (string $t, string $s, string $m, array $d): void {
            $this->notices[] = [$t, $s, $m, $d];
            if ($this->onNotify !== null) {
                ($this->onNotify)();
            }
        }));
    }

    /**
     * @param list<array<string, mixed>> $raw
     * @return list<Operation>
     */
    protected static function ops(array $raw, bool $rollback = false): array
    {
        $objects = json_decode((string) json_encode($raw));
        return OperationValidator::check($rollback, [$rollback ? 'restore_operations' : 'operations' => $objects], null);
    }

    /** @return array<string, array<string, string>> the shop's tables (not the SDK's config table) */
    protected function columns(): array
    {
        $dialect = Database::dialect($this->pdo());
        $tables = array_values(array_filter($dialect->tables($this->pdo()), static fn (string $t): bool => strpos($t, 'autoheal_') !== 0));
        return $dialect->columns($this->pdo(), $tables);
    }

    public function testAddColumnThenDropIt(): void
    {
        $this->createShopTables();
        $add = self::ops([['op' => 'add_column', 'table' => 'wp_molam_orders', 'column' => 'merchant_fee', 'column_type' => 'DECIMAL(10,2)']]);
        $applier = $this->applier();
        $snapshot = $applier->snapshot($add);
        self::assertFalse($snapshot->hasColumn('wp_molam_orders', 'merchant_fee'));
        self::assertNotNull($snapshot->columnType('wp_molam_orders', 'amount'));
        $steps = [];
        $outcome = $applier->apply($add, $snapshot, static function (int $n) use (&$steps): void {
            $steps[] = $n;
        });
        self::assertTrue($outcome->isSuccess(), (string) $outcome->error());
        self::assertSame(1, $outcome->inEffect());
        self::assertSame([1], $steps);
        self::assertSame('DECIMAL(10,2)', $this->columns()['wp_molam_orders']['merchant_fee']);

        $drop = self::ops([['op' => 'drop_column', 'table' => 'wp_molam_orders', 'column' => 'merchant_fee']], true);
        self::assertTrue($applier->apply($drop, $applier->snapshot($drop))->isSuccess());
        self::assertArrayNotHasKey('merchant_fee', $this->columns()['wp_molam_orders']);
        self::assertSame('1', (string) $this->pdo()->query('SELECT id FROM wp_molam_orders')->fetchColumn(), 'the rows are untouched');
    }

    public function testAFailingSecondOperationLeavesTheTablesExactlyAsBefore(): void
    {
        $this->createShopTables();
        $before = $this->columns();
        $ops = self::ops([
            ['op' => 'add_column', 'table' => 'wp_molam_orders', 'column' => 'merchant_fee', 'column_type' => 'DECIMAL(10,2)'],
            ['op' => 'add_column', 'table' => 'wp_molam_orders', 'column' => 'broken', 'column_type' => $this->typeTheDatabaseRefuses()],
        ]);
        $applier = $this->applier();
        $outcome = $applier->apply($ops, $applier->snapshot($ops));
        self::assertFalse($outcome->isSuccess());
        self::assertSame(0, $outcome->inEffect(), 'the undo was complete');
        self::assertStringContainsString('operation 1', (string) $outcome->error());
        self::assertSame($before, $this->columns());
    }

    public function testAFailureOnAMissingTableUndoesConfigToo(): void
    {
        $this->createShopTables();
        $config = new PdoConfigStore($this->pdo());
        $config->set('memory_limit', '128M');
        $ops = self::ops([
            ['op' => 'set_config', 'key' => 'memory_limit', 'value' => '256M'],
            ['op' => 'set_config', 'key' => 'payment.timeout_ms', 'value' => 5000],
            ['op' => 'add_column', 'table' => 'no_such_table', 'column' => 'c', 'column_type' => 'INT'],
        ]);
        $applier = $this->applier();
        $outcome = $applier->apply($ops, $applier->snapshot($ops));
        self::assertSame(0, $outcome->inEffect());
        self::assertSame(['memory_limit' => '128M'], $config->all(), 'the old value back, the new key gone');
    }

    public function testAnUndoThatFailsReportsWhatStaysInEffect(): void
    {
        $this->createShopTables();
        $ops = self::ops([
            ['op' => 'add_column', 'table' => 'wp_molam_orders', 'column' => 'merchant_fee', 'column_type' => 'INT'],
            ['op' => 'set_config', 'key' => 'memory_limit', 'value' => '256M'],
            ['op' => 'notify_merchant', 'template' => 'php_upgrade', 'severity' => 'warning', 'message' => 'Upgrade PHP'],
        ]);
        $applier = $this->applier();
        $snapshot = $applier->snapshot($ops);
        // The notification fails, and by then the config table is gone: undoing the
        // set_config fails, so it and the column before it stay in effect.
        $this->onNotify = function (): void {
            $this->pdo()->exec('DROP TABLE autoheal_config');
            throw new \RuntimeException('mail server down');
        };
        $outcome = $applier->apply($ops, $snapshot);
        self::assertFalse($outcome->isSuccess());
        self::assertSame(2, $outcome->inEffect());
        self::assertStringContainsString('mail server down', (string) $outcome->error());
        self::assertStringContainsString('undoing operation 1 failed', (string) $outcome->error());
        self::assertArrayHasKey('merchant_fee', $this->columns()['wp_molam_orders']);
    }

    public function testNotificationsGoToTheNotifier(): void
    {
        $ops = self::ops([['op' => 'notify_merchant', 'template' => 'api_key_refresh', 'severity' => 'critical', 'message' => 'Refresh your key', 'data' => ['platform' => 'woocommerce']]]);
        $applier = $this->applier();
        self::assertTrue($applier->apply($ops, $applier->snapshot($ops))->isSuccess());
        self::assertSame([['api_key_refresh', 'critical', 'Refresh your key', ['platform' => 'woocommerce']]], $this->notices);
    }

    public function testRecoveryUndoesAStepACrashLeftUnrecorded(): void
    {
        $this->createShopTables();
        $before = $this->columns();
        $ops = self::ops([
            ['op' => 'add_column', 'table' => 'wp_molam_orders', 'column' => 'a', 'column_type' => 'INT'],
            ['op' => 'add_column', 'table' => 'wp_molam_orders', 'column' => 'b', 'column_type' => 'INT'],
        ]);
        $applier = $this->applier();
        $snapshot = $applier->snapshot($ops);
        // The process applied both, but died before journaling the second.
        $applier->apply($ops, $snapshot);
        $outcome = $applier->recover($ops, $snapshot, 1);
        self::assertSame(0, $outcome->inEffect());
        self::assertSame($before, $this->columns());
        self::assertSame(0, $applier->recover($ops, $snapshot, 1)->inEffect(), 'recovering twice does no harm');
    }

    public function testReservedWordsAreQuoted(): void
    {
        $this->pdo()->exec('CREATE TABLE ' . Database::dialect($this->pdo())->quote('order') . ' (id INT)');
        $ops = self::ops([['op' => 'add_column', 'table' => 'order', 'column' => 'select', 'column_type' => 'VARCHAR(20)']]);
        $applier = $this->applier();
        self::assertTrue($applier->apply($ops, $applier->snapshot($ops))->isSuccess());
        self::assertArrayHasKey('select', $this->columns()['order']);
    }
}
