<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Heartbeat;

use Autoheal\Sdk\Config\PdoConfigStore;
use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Database\TableSelection;
use Autoheal\Sdk\Heartbeat\StateCollector;
use Autoheal\Sdk\Journal\PdoJournal;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Tests\Support\MariaDb;
use Autoheal\Sdk\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

final class StateCollectorTest extends TestCase
{
    private ?string $dir = null;
    private ?MariaDb $db = null;

    protected function tearDown(): void
    {
        if ($this->dir !== null) {
            TempDir::remove($this->dir);
        }
        if ($this->db !== null) {
            $this->db->drop();
        }
    }

    private function sqlite(): \PDO
    {
        $this->dir = TempDir::create('state');
        return Database::connect('sqlite:' . $this->dir . '/shop.db', null, null);
    }

    public function testSqliteTablesByPrefix(): void
    {
        $pdo = $this->sqlite();
        $pdo->exec('CREATE TABLE wp_molam_orders (id BIGINT UNSIGNED, amount DECIMAL(10,2), status varchar(20))');
        $pdo->exec('CREATE TABLE wp_molam_odd (ok INT, weird "x;y", untyped)');
        $pdo->exec('CREATE TABLE wp_users (id INT)');
        $pdo->exec('CREATE VIEW wp_molam_view AS SELECT id FROM wp_molam_orders');
        new PdoJournal($pdo, 'wp_molam_');   // its tables carry the prefix but are never reported

        $collector = new StateCollector($pdo, TableSelection::prefixed('wp_molam_'), null);
        $state = Json::toArray($collector->collect());
        self::assertSame([
            'wp_molam_odd' => ['ok' => 'INT'],
            'wp_molam_orders' => ['id' => 'BIGINT UNSIGNED', 'amount' => 'DECIMAL(10,2)', 'status' => 'VARCHAR(20)'],
        ], $state['tables']);
        self::assertCount(2, $collector->skipped());
        self::assertArrayNotHasKey('config', $state);
    }

    public function testNamedTablesAndConfig(): void
    {
        $pdo = $this->sqlite();
        $pdo->exec('CREATE TABLE wp_molam_orders (id INT)');
        $config = new PdoConfigStore($pdo);
        $config->set('memory_limit', '128M');
        $config->set('payment.timeout_ms', 5000);
        $config->set('debug', false);
        $pdo->exec("INSERT INTO autoheal_config (name, value) VALUES ('Bad-Key', '1'), ('long', '\"" . str_repeat('x', 300) . "\"')");
        $collector = new StateCollector($pdo, TableSelection::named(['wp_molam_orders', 'missing_table']), $config, static fn (): array => [
            'active_gateways' => ['stripe', 'molam'],
            'php_version' => '8.1',       // the server's own: left out
            'nested' => ['a' => ['b']],   // not a short scalar list: left out
        ]);
        $body = Json::encode($collector->collect());
        self::assertSame('{"config":{"debug":false,"memory_limit":"128M","payment.timeout_ms":5000},"tables":{"wp_molam_orders":{"id":"INT"}},"active_gateways":["stripe","molam"]}', $body);
        self::assertCount(4, $collector->skipped());
    }

    public function testEmptyMapsStayObjects(): void
    {
        $pdo = $this->sqlite();
        $config = new PdoConfigStore($pdo);
        $body = Json::encode((new StateCollector($pdo, TableSelection::prefixed('none_'), $config))->collect());
        self::assertSame('{"config":{},"tables":{}}', $body);
    }

    public function testMariaDbReportsColumnTypeUpperCasedButNotItsValues(): void
    {
        $this->db = MariaDb::create($this);
        $pdo = $this->db->connect();
        $pdo->exec("CREATE TABLE wp_molam_orders (id BIGINT UNSIGNED NOT NULL, amount DECIMAL(10,2), status ENUM('pending','paid'), note TEXT)");
        $pdo->exec('CREATE TABLE other (id INT)');
        $pdo->exec('CREATE VIEW wp_molam_v AS SELECT id FROM wp_molam_orders');
        $state = Json::toArray((new StateCollector($pdo, TableSelection::prefixed('wp_molam_'), null))->collect());
        self::assertSame(['wp_molam_orders' => [
            'id' => 'BIGINT(20) UNSIGNED', 'amount' => 'DECIMAL(10,2)', 'status' => "ENUM('pending','paid')", 'note' => 'TEXT',
        ]], $state['tables']);
    }

}
