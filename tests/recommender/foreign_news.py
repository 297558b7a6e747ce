"""Short news stories in French and German for the lexical side of ranking: two reports of
each of a few events, and stories of nothing else. Written for these tests."""

FRENCH = {
    1: ("Incendie dans une usine chimique près de Rouen",
        "Un incendie s'est déclaré dans la nuit de mardi à mercredi dans une usine chimique "
        "de Petit-Quevilly, près de Rouen. Les pompiers sont intervenus avec plus de deux "
        "cents hommes. La préfecture de Seine-Maritime a demandé aux habitants de rester chez"
        " eux. Selon le préfet, aucune victime n'est à déplorer. Les écoles de la ville "
        "resteront fermées jeudi. Une enquête a été ouverte par le parquet pour déterminer "
        "les causes du sinistre. Il s'agit de la deuxième alerte sur le site en trois ans."),
    2: ("Rouen : les habitants inquiets après l'incendie de l'usine",
        "Au lendemain de l'incendie de l'usine de Petit-Quevilly, les habitants de Rouen "
        "s'interrogent sur la qualité de l'air. La préfecture assure que les mesures ne "
        "montrent pas de danger immédiat. Des odeurs persistent pourtant dans plusieurs "
        "quartiers. Les agriculteurs de Seine-Maritime ont reçu l'ordre de suspendre les "
        "récoltes. Le ministre de la Transition écologique doit se rendre sur place. Une "
        "réunion publique est prévue vendredi à la mairie."),
    3: ("Le Sénat adopte la réforme des retraites",
        "Le Sénat a adopté dans la nuit le projet de réforme des retraites, après des débats "
        "houleux. Le texte prévoit de reporter l'âge légal de départ à soixante-quatre ans. "
        "Les sénateurs de gauche ont dénoncé un passage en force. Selon le gouvernement, la "
        "réforme est indispensable pour garantir l'équilibre du système. Une commission mixte"
        " paritaire doit désormais se réunir. Les syndicats appellent à une nouvelle journée "
        "de mobilisation la semaine prochaine."),
    4: ("Retraites : les syndicats maintiennent la pression après le vote du Sénat",
        "Après le vote du Sénat sur la réforme des retraites, l'intersyndicale a annoncé une "
        "nouvelle journée de grève. Les syndicats dénoncent un texte injuste pour les "
        "salariés aux carrières longues. La CGT et la CFDT appellent à manifester dans toutes"
        " les grandes villes. Le gouvernement d'Élisabeth Borne se dit ouvert au dialogue "
        "mais ne reviendra pas sur l'âge de départ. Des perturbations sont attendues dans les"
        " transports."),
    5: ("Le PSG s'impose face à Marseille au Parc des Princes",
        "Le Paris Saint-Germain a battu l'Olympique de Marseille trois buts à un dimanche "
        "soir au Parc des Princes. Kylian Mbappé a inscrit un doublé et offert une passe "
        "décisive. Les Marseillais avaient pourtant ouvert le score dès la dixième minute. "
        "Avec cette victoire, le PSG compte désormais huit points d'avance en tête du "
        "championnat. L'entraîneur parisien a salué la réaction de son équipe après la pause."),
    6: ("Mbappé porte le PSG dans le Classique",
        "Kylian Mbappé a été l'homme du match lors du Classique entre le PSG et Marseille. "
        "L'attaquant a marqué deux fois et permis aux Parisiens de renverser la rencontre. "
        "Les supporters marseillais ont quitté le stade déçus. Le club phocéen reste à la "
        "troisième place du classement. Les deux équipes se retrouveront en Coupe de France "
        "le mois prochain."),
    7: ("Une exposition consacrée à Monet au musée d'Orsay",
        "Le musée d'Orsay consacre une grande exposition à Claude Monet à partir de samedi. "
        "Plus de cent toiles sont présentées, dont plusieurs prêtées par des collections "
        "américaines. Les commissaires ont voulu montrer l'évolution du peintre, des "
        "premières marines aux Nymphéas. Les billets sont déjà en vente sur le site du musée."
        " Une nocturne est prévue chaque jeudi jusqu'en janvier."),
    8: ("La Banque centrale européenne relève ses taux",
        "La Banque centrale européenne a relevé ses taux directeurs d'un quart de point "
        "jeudi. Christine Lagarde a justifié cette décision par une inflation toujours trop "
        "élevée dans la zone euro. Les marchés s'attendaient à cette hausse. Selon les "
        "économistes, la BCE pourrait marquer une pause lors de sa prochaine réunion. Les "
        "crédits immobiliers devraient encore renchérir dans les mois à venir."),
}

GERMAN = {
    1: ("Hochwasser in Passau: Altstadt überflutet",
        "Nach tagelangem Regen ist die Donau in Passau über die Ufer getreten. Die Altstadt "
        "steht unter Wasser, rund zweitausend Menschen mussten ihre Wohnungen verlassen. Der "
        "Krisenstab der Stadt hat den Katastrophenfall ausgerufen. Laut dem Deutschen "
        "Wetterdienst soll der Regen erst am Wochenende nachlassen. Die Bundeswehr hilft beim"
        " Füllen von Sandsäcken. Auch in Regensburg wird mit steigenden Pegeln gerechnet."),
    2: ("Passau kämpft gegen die Flut",
        "In Passau hat die Donau einen Pegel von fast elf Metern erreicht. Die Feuerwehr ist "
        "mit Booten in der Altstadt unterwegs, um Bewohner in Sicherheit zu bringen. "
        "Ministerpräsident Markus Söder besuchte am Nachmittag den Krisenstab. Er versprach "
        "schnelle Hilfe für die Betroffenen. Die Schulen im Landkreis bleiben bis auf "
        "Weiteres geschlossen."),
    3: ("Bundestag beschließt höheren Mindestlohn",
        "Der Bundestag hat am Donnerstag eine Erhöhung des Mindestlohns beschlossen. Ab "
        "Januar sollen Beschäftigte mindestens dreizehn Euro pro Stunde verdienen. Die "
        "Gewerkschaften begrüßten die Entscheidung, die Arbeitgeber warnten vor Jobverlusten."
        " Bundesarbeitsminister Hubertus Heil sprach von einem wichtigen Schritt. Die "
        "Opposition kritisierte, dass die Mindestlohnkommission übergangen worden sei."),
    4: ("Mindestlohn: Arbeitgeber kritisieren Beschluss des Bundestages",
        "Nach dem Beschluss des Bundestages zum Mindestlohn haben die Arbeitgeberverbände "
        "scharfe Kritik geübt. Die Politik greife in die Tarifautonomie ein, hieß es. "
        "Hubertus Heil verteidigte die Erhöhung auf dreizehn Euro. Die Mindestlohnkommission "
        "werde künftig wieder allein entscheiden. Vor allem kleine Betriebe im Osten seien "
        "betroffen."),
    5: ("Bayern München gewinnt gegen Dortmund",
        "Der FC Bayern München hat das Spitzenspiel gegen Borussia Dortmund mit drei zu null "
        "gewonnen. Harry Kane traf zweimal, Jamal Musiala erzielte das dritte Tor. Die "
        "Dortmunder waren vor allem in der zweiten Halbzeit chancenlos. Mit dem Sieg baut der"
        " Rekordmeister seinen Vorsprung in der Tabelle aus. Der Trainer lobte die Leistung "
        "seiner Mannschaft."),
    6: ("Neue Ausstellung im Berliner Pergamonmuseum",
        "Das Pergamonmuseum in Berlin zeigt ab Samstag eine Ausstellung über die Kunst des "
        "alten Babylon. Zu sehen sind mehr als zweihundert Objekte, darunter Leihgaben aus "
        "London und Paris. Die Kuratoren haben die Schau über fünf Jahre vorbereitet. Tickets"
        " gibt es online und an der Museumskasse. Das Museum ist am Montag geschlossen."),
}

# Each story's other report of its event (the rest are unrelated to it).
FRENCH_EVENTS = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5}
GERMAN_EVENTS = {1: 2, 2: 1, 3: 4, 4: 3}
